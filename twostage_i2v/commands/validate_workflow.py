"""`validate-workflow FILE [--server URL]`: check a workflow against a ComfyUI's node definitions."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

VERB = "validate-workflow"
HELP = ("Check a UI- or API-format workflow (JSON, or a PNG/WEBP/MP4/WEBM that carries one) against the node "
        "definitions of a running ComfyUI (--server) or of the in-process one: unknown nodes, widget "
        "count/type/range/choices, dangling or mistyped links; lists the model files it needs. Executes nothing.")


def add_arguments(p):
    p.add_argument("file", help="workflow .json (UI or API format) or a PNG/WEBP/MP4/MOV/WEBM carrying one")
    p.add_argument("--server", metavar="URL", help="a running ComfyUI, e.g. http://127.0.0.1:8188 (uses its /object_info)")
    p.add_argument("--base-dir", metavar="DIR",
                   help="without --server: the ComfyUI base directory (models/, input/) to check files against "
                        "(default: .venv/validate-base in this checkout)")
    p.add_argument("--strict", action="store_true", help="also fail when a model file it needs is missing")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def in_process_object_info(base_dir: str | None) -> dict:
    from ..headless import inprocess
    from ..headless.object_info import object_info_in_process

    base = Path(base_dir) if base_dir else inprocess.REPO_ROOT / ".venv" / "validate-base"
    # ComfyUI prints while it starts; keep stdout for the report.
    with contextlib.redirect_stdout(sys.stderr):
        rt = inprocess.boot(base)
        return object_info_in_process(rt.nodes)


def run(args) -> int:
    from ..headless.client import ComfyHTTPError
    from ..headless.inprocess import ComfyNotFound
    from ..headless.object_info import object_info_from_server
    from ..workflow.json_text import BadWorkflowFile
    from ..workflow.validate import format_report, validate
    from ..workflow.workflow_file import load_workflow

    path = Path(args.file)
    try:
        data = load_workflow(path)
    except BadWorkflowFile as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        object_info = object_info_from_server(args.server) if args.server else in_process_object_info(args.base_dir)
    except (ComfyHTTPError, ComfyNotFound) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = validate(data, object_info)
    ok = report.ok and not (args.strict and report.missing_files)
    if args.json:
        print(json.dumps(dict(report.as_dict(), valid=ok), indent=2))
    else:
        print(format_report(report, str(path)))
        if report.ok and not ok:
            print("  --strict: missing files count as errors")
    return 0 if ok else 1
