"""A file someone says holds a workflow (JSON, or a PNG/WEBP/MP4/WEBM carrying one) -> the
parsed workflow, its shape checked, or ``BadWorkflowFile`` with one line naming the file and
what is wrong. What ``validate-workflow`` reads before it asks any ComfyUI anything.
"""

from __future__ import annotations

from pathlib import Path

from .json_text import read_json_file
from .media_metadata import NAMES, NoWorkflow, embedded, sniff
from .shape import check_shape


def load_workflow(path):
    """The workflow (or API prompt) in a JSON file or carried by a media file, shape-checked."""
    path = Path(path)
    kind = sniff(path)
    if kind == "unknown":
        data = read_json_file(path)
    else:
        found = embedded(path)
        data = found["workflow"] if found["workflow"] is not None else found["prompt"]
        if not data:
            damage = f" The file is damaged: {found['damage']}." if found.get("damage") else ""
            raise NoWorkflow(f"{path}: this {NAMES[kind]} file carries no ComfyUI workflow or prompt.{damage}")
    check_shape(data, path)
    return data
