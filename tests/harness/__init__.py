"""Test-only helpers: the real ComfyUI server process and graph builders."""
