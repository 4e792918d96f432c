"""`extract-workflow FILE [--out workflow.json]`: the workflow a ComfyUI output file carries."""

from __future__ import annotations

import json
import sys
from pathlib import Path

VERB = "extract-workflow"
HELP = ("Print the ComfyUI workflow embedded in an MP4/MOV/M4V, WEBM, PNG or WEBP file (or write it with --out); "
        "exits non-zero with the reason when there is none.")


def add_arguments(p):
    p.add_argument("file", help="a video or image saved by ComfyUI")
    p.add_argument("--out", metavar="FILE", help="write the workflow JSON here instead of printing it")
    p.add_argument("--force", action="store_true", help="with --out: replace an existing file")
    p.add_argument("--prompt", action="store_true", help="the API-format prompt instead of the UI workflow")


def _count(data: dict) -> str:
    nodes = data.get("nodes")
    return f"{len(nodes)} nodes" if isinstance(nodes, list) else f"{len(data)} nodes (API format)"


def run(args) -> int:
    from ..workflow.json_text import BadWorkflowFile
    from ..workflow.media_metadata import extract_prompt, extract_workflow

    try:
        data = extract_prompt(args.file) if args.prompt else extract_workflow(args.file)
    except BadWorkflowFile as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    text = json.dumps(data, indent=2, ensure_ascii=False)
    if not args.out:
        print(text)
        return 0
    out = Path(args.out)
    if out.exists() and not args.force:
        print(f"error: {out} exists; pick another name or add --force to replace it", file=sys.stderr)
        return 1
    try:
        out.write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        print(f"error: cannot write {out} ({exc.strerror or exc})", file=sys.stderr)
        return 1
    print(f"wrote {out} ({_count(data)}) from {args.file}")
    return 0
