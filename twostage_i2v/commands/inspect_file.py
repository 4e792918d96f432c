"""`inspect FILE [--json]`: what a GGUF model file is."""

from __future__ import annotations

import json
import sys

VERB = "inspect"
HELP = ("Say what a .gguf file is: kind (wan-i2v, wan-t2v, wan-variant, umt5, other), Wan version and A14B "
        "expert, and why; quant mix, size, parameters.")


def add_arguments(p):
    p.add_argument("file", help="path to a .gguf file")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


def run(args) -> int:
    from ..gguf.reader import GGUFReadError  # imported here: reading GGUF needs torch, the other verbs do not
    from ..models.summary import format_summary, summarize_file

    try:
        s = summarize_file(args.file)
    except GGUFReadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(s, indent=2) if args.json else format_summary(s))
    return 0
