"""`lint-prompt "TEXT" [--json]`: check a Wan I2V motion prompt offline."""

from __future__ import annotations

import json
import sys

from ..prompt.lint import lint_result

VERB = "lint-prompt"
HELP = ("Check a Wan 2.1 image-to-video motion prompt: appearance words the start image already fixes, "
        "conflicting camera moves, too many actions, empty or over-long text. Deterministic, no model needed.")


def add_arguments(p):
    p.add_argument("text", help='the prompt, in quotes; "-" reads it from standard input')
    p.add_argument("--json", action="store_true",
                   help='print {"prompt": ..., "warnings": [{"category", "span", "message"}]}; an empty list means clean')


def _write(s: str) -> None:
    # UTF-8 whatever the console's code page: prompts are often Chinese or Japanese.
    out = getattr(sys.stdout, "buffer", None)
    if out is None:
        print(s)
    else:
        sys.stdout.flush()
        out.write((s + "\n").encode("utf-8"))
        out.flush()


def run(args) -> int:
    text = sys.stdin.read() if args.text == "-" else args.text
    result = lint_result(text)
    if args.json:
        _write(json.dumps(result, ensure_ascii=False, indent=2))
    elif not result["warnings"]:
        _write("clean: no warnings")
    else:
        _write("\n".join(f"{w['category']}: {w['message']}" for w in result["warnings"]))
    return 0
