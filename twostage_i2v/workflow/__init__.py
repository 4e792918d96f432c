"""Workflow files: the shipped workflows built from code, UI-to-API conversion, validation, thumbnails, embedded
metadata, and the strict, bounded reading of whatever file a user hands over."""
