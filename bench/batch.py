"""Batch throughput on the small models: the local default against Ray with 1 and 2 workers.

    .venv/bin/python bench/batch.py [--jobs 8] [--keep DIR] [--json]

Runs the same jobs (workflow 1, ``--small-models``, one seed per job) three times through
``python -m twostage_i2v batch``, each into a fresh output folder, in this order:

1. the local default (no ``--ray``): one in-process ComfyUI, torch's own thread count;
2. ``--ray local --workers 1 --threads 1``;
3. ``--ray local --workers 2 --threads 1`` (one torch thread each);

and prints, per run: wall time from the command's start to its exit, the jobs phase (first
job started to last job finished, read off the per-job lines as they appear), jobs per minute
over each, the peak RSS of each worker as the batch reports it, and the ratios against the
local default measured in the same bench run. Before each run it waits (up to 10 minutes)
for enough free memory (about 9 GB per ComfyUI with today's small models).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / "workflows" / "two_stage_i2v_480p.json"
GB_PER_WORKER = 9.0
RUNS = (
    ("local default", []),
    ("ray, 1 worker x 1 thread", ["--ray", "local", "--workers", "1", "--threads", "1"]),
    ("ray, 2 workers x 1 thread", ["--ray", "local", "--workers", "2", "--threads", "1"]),
)


def available_gb() -> float:
    with open("/proc/meminfo") as f:
        info = {line.split(":")[0]: int(line.split()[1]) for line in f}
    return info["MemAvailable"] / 2**20


def wait_for_memory(gb: float) -> float:
    deadline = time.monotonic() + 600
    while available_gb() < gb and time.monotonic() < deadline:
        time.sleep(15)
    return available_gb()


def run_batch(jobs: Path, out: Path, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "twostage_i2v", "batch", str(jobs), "--workflow", str(WORKFLOW),
           "--out", str(out), "--small-models", *extra]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    first_start = last_done = None
    rss = {}
    done = failed = 0
    for line in proc.stdout:
        now = time.monotonic() - t0
        if line.startswith("[batch] start ") and first_start is None:
            first_start = now
        elif line.startswith("[batch] done "):
            done += 1
            last_done = now
        elif line.startswith("[batch] FAILED "):
            failed += 1
            last_done = now
        elif line.startswith("[batch] peak RSS per worker: "):
            for name, mb in re.findall(r"(\S+) (\d+) MB", line.split(": ", 1)[1]):
                rss[name] = int(mb)
    code = proc.wait()
    wall = time.monotonic() - t0
    phase = (last_done - first_start) if first_start is not None and last_done is not None else None
    return {"exit": code, "done": done, "failed": failed, "wall_s": round(wall, 1),
            "jobs_phase_s": None if phase is None else round(phase, 1), "peak_rss_mb": rss}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=8)
    p.add_argument("--keep", metavar="DIR", help="keep the outputs here (default: a temporary folder, removed)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-batch-"))
    root.mkdir(parents=True, exist_ok=True)
    jobs = root / "jobs.jsonl"
    jobs.write_text("".join(json.dumps({"id": f"j{i:02d}", "set": {"KSampler (Wan I2V).seed": 100 + i}}) + "\n"
                            for i in range(args.jobs)))
    results = {}
    try:
        for name, extra in RUNS:
            workers = int(extra[extra.index("--workers") + 1]) if "--workers" in extra else 1
            free = wait_for_memory(GB_PER_WORKER * workers)
            if not args.json:
                print(f"{name}: {free:.1f} GB available, running {args.jobs} jobs ...", flush=True)
            out = root / re.sub(r"\W+", "-", name).strip("-")
            results[name] = run_batch(jobs, out, extra)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    ref = results[RUNS[0][0]]
    for r in results.values():
        r["jobs_per_min_wall"] = round(60 * r["done"] / r["wall_s"], 2) if r["wall_s"] else None
        r["jobs_per_min_phase"] = round(60 * r["done"] / r["jobs_phase_s"], 2) if r["jobs_phase_s"] else None
        r["ratio_wall"] = round(r["jobs_per_min_wall"] / ref["jobs_per_min_wall"], 2) if ref["jobs_per_min_wall"] else None
        r["ratio_phase"] = (round(r["jobs_per_min_phase"] / ref["jobs_per_min_phase"], 2)
                            if ref["jobs_per_min_phase"] and r["jobs_per_min_phase"] else None)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"\n{args.jobs} jobs, small models, 2 CPU cores; ratios against the local default of this run")
    print(f"{'run':28} {'done':>4} {'wall s':>7} {'jobs/min':>8} {'ratio':>6} {'phase s':>8} {'jobs/min':>8} "
          f"{'ratio':>6}  peak RSS per worker")
    for name, r in results.items():
        rss = ", ".join(f"{w} {mb} MB" for w, mb in sorted(r["peak_rss_mb"].items()))
        print(f"{name:28} {r['done']:>4} {r['wall_s']:>7} {r['jobs_per_min_wall']!s:>8} {r['ratio_wall']!s:>6} "
              f"{r['jobs_phase_s']!s:>8} {r['jobs_per_min_phase']!s:>8} {r['ratio_phase']!s:>6}  {rss}")
    bad = [n for n, r in results.items() if r["exit"] != 0]
    if bad:
        print(f"runs that did not finish cleanly: {', '.join(bad)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
