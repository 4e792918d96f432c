"""Placeholder until its issue lands."""

NODES = []
