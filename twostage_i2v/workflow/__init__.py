"""Workflow files: the shipped workflows built from code, UI-to-API conversion, validation, thumbnails, embedded metadata."""
