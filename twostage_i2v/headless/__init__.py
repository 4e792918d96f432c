"""Driving a real ComfyUI without its UI: in-process boot, HTTP client, API graphs, node definitions (demo, tests, batch)."""
