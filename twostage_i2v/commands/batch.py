"""`batch JOBS.jsonl --workflow WORKFLOW.json --out DIR`: many clips from one workflow, resumable.

Each line of JOBS.jsonl sets widget values of the workflow (`{"id": "a1", "set":
{"KSampler (Wan I2V).seed": 7}}`); each job writes DIR/<id>.mp4 (carrying its own
workflow and prompt) and its first-frame PNG, and one line in DIR/manifest.jsonl.
"""

from __future__ import annotations

import sys
from pathlib import Path

VERB = "batch"
HELP = ("Run one workflow many times with the values of each line of a JSONL jobs file, here (default) or on "
        "Ray workers (--ray); writes DIR/<id>.mp4, its first-frame PNG and DIR/manifest.jsonl; a rerun skips "
        "what is done.")


def _positive(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is below 1")
    return value


def add_arguments(p):
    p.add_argument("jobs", help="JSONL file, one job a line: {\"id\": \"...\", \"set\": {\"<node title or id>.<input>\": "
                                "value}}")
    p.add_argument("--workflow", required=True,
                   help="the UI workflow to run (JSON as the frontend saves it, or a PNG/MP4/WEBM carrying one)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder: <id>.mp4, <id>.png, manifest.jsonl")
    p.add_argument("--ray", metavar="local|auto|ADDRESS", default=None,
                   help="run on Ray: 'local' starts a Ray instance here, 'auto' or HOST:PORT joins a cluster "
                        "(ray start --head / ray start --address=...); needs the [ray] extra. Without it the jobs "
                        "run in this process, one after another")
    p.add_argument("--workers", type=_positive, default=None,
                   help="Ray workers, each a ComfyUI that keeps its models loaded (default: one per GPU, else 1)")
    p.add_argument("--threads", type=_positive, default=None,
                   help="torch CPU threads per worker (default: with --ray local, the cores shared out; else torch's)")
    p.add_argument("--small-models", action="store_true",
                   help="swap in the built-in small random models and CPU sizes, as `demo` does (runs anywhere; "
                        "the videos are noise)")
    p.add_argument("--retry-failed", action="store_true", help="run again the jobs the manifest lists as failed")
    p.add_argument("--base-dir", metavar="DIR", default=None,
                   help="ComfyUI base directory on each worker (models/, custom_nodes/); default: the ComfyUI this "
                        "package is installed in (COMFYUI_PATH, or the one whose custom_nodes/ holds it)")
    p.add_argument("--verbose", action="store_true", help="show ComfyUI's log and, on Ray, the workers' output")


def run(args) -> int:
    from ..headless.batch.runner import BatchOptions, run_batch

    if args.small_models and args.base_dir:
        print("error: --small-models uses a fresh base directory per worker; leave out --base-dir", file=sys.stderr)
        return 2
    opts = BatchOptions(jobs=Path(args.jobs), workflow=Path(args.workflow), out=Path(args.out), ray=args.ray,
                        workers=args.workers, threads=args.threads, small_models=args.small_models,
                        retry_failed=args.retry_failed, base_dir=args.base_dir, verbose=args.verbose)
    return run_batch(opts)
