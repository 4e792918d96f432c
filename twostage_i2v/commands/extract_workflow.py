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
    p.add_argument("--prompt", action="store_true", help="the API-format prompt instead of the UI workflow")


def run(args) -> int:
    from ..workflow.media_metadata import NoWorkflow, extract_prompt, extract_workflow

    try:
        data = extract_prompt(args.file) if args.prompt else extract_workflow(args.file)
    except NoWorkflow as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    text = json.dumps(data, indent=2, ensure_ascii=False)
    if args.out:
        out = Path(args.out)
        out.write_text(text + "\n", encoding="utf-8")
        what = f"{len(data.get('nodes', []))} nodes" if "nodes" in data else f"{len(data)} nodes (API format)"
        print(f"wrote {out} ({what}) from {args.file}")
    else:
        print(text)
    return 0
