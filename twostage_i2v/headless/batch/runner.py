"""A whole batch, start to end: read and check the jobs, decide what resume skips, start
the workers (here, or on Ray), check that each has what the workflow needs, run, report.

Everything a user can get wrong is refused before the first job runs: the jobs file
(line numbers), the workflow, a worker without the package or a model file (named with
the node that needs it and the worker that lacks it).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ...workflow.convert import ConversionError, is_ui_workflow, ui_to_api, widget_values_by_name
from ...workflow.jobs import (JobsFileError, apply_job, job_fingerprint, raw_input_files, read_jobs,
                              resolve_jobs)
from ...workflow.manifest import DONE, FAILED, Manifest, decide, remove_stale_temps
from .dispatch import Batch, Task
from .progress import Progress, duration

REFUSED, SOME_FAILED, INTERRUPTED_EXIT = 2, 1, 130


@dataclass
class BatchOptions:
    jobs: Path
    workflow: Path
    out: Path
    ray: str | None = None  # None: the embedded default, in this process
    workers: int | None = None
    threads: int | None = None
    small_models: bool = False
    retry_failed: bool = False
    base_dir: str | None = None
    verbose: bool = False


class Refused(Exception):
    """The batch cannot start as asked; the message says what to change."""


def say(text: str, stream=None) -> None:
    print(f"[batch] {text}", file=stream or sys.stdout, flush=True)


def load_ui_workflow(path: Path) -> dict:
    from ...workflow.json_text import BadWorkflowFile
    from ...workflow.workflow_file import load_workflow

    if not Path(path).is_file():
        raise Refused(f"{path}: no such workflow file")
    try:
        data = load_workflow(Path(path))
    except BadWorkflowFile as exc:
        raise Refused(str(exc)) from None
    if not is_ui_workflow(data):
        raise Refused(f"{path}: not a UI workflow (the file the ComfyUI frontend saves, with nodes and links); "
                      "an API-format export has no titles to address and nothing to embed in the videos")
    return data


def run_batch(opts: BatchOptions) -> int:
    started = time.monotonic()
    try:
        return _run(opts, started)
    except Refused as exc:
        say(f"error: {exc}", sys.stderr)
        return REFUSED
    except JobsFileError as exc:
        say(f"error: {exc}", sys.stderr)
        return REFUSED
    except KeyboardInterrupt:
        say(f"interrupted; what finished is recorded in {Path(opts.out) / 'manifest.jsonl'}", sys.stderr)
        return INTERRUPTED_EXIT


def _run(opts: BatchOptions, started: float) -> int:
    if opts.ray is None and opts.workers not in (None, 1):
        raise Refused("--workers needs --ray (local, auto or an address): without it the batch runs here, "
                      "one job after another")
    jobs = read_jobs(opts.jobs)
    ui = load_ui_workflow(opts.workflow)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    for gone in remove_stale_temps(out):
        say(f"removed {gone.name}, a temporary file an interrupted run left")
    manifest = Manifest(out)
    for w in manifest.warnings:
        say(f"warning: {w}")

    canonical = json.dumps(ui, sort_keys=True, ensure_ascii=False).encode()
    variant = "small-models" if opts.small_models else "as-is"
    files_base = Path(opts.jobs).resolve().parent
    fingerprints, to_run, skipped_failed = {}, [], []
    for job in jobs:
        fingerprints[job.id] = job_fingerprint(job, canonical, variant, raw_input_files(job, files_base))
        decision = decide(manifest.get(job.id), fingerprints[job.id], out, opts.retry_failed)
        if decision.run:
            to_run.append(job)
            if decision.reason != "new":
                say(f"{job.id}: runs again: {decision.reason}")
        elif manifest.get(job.id).get("status") == FAILED:
            skipped_failed.append(job.id)
            say(f"skip {job.id}: {decision.reason}")
    skipped = len(jobs) - len(to_run)
    if skipped:
        say(f"{skipped} of {len(jobs)} job(s) already finished (manifest {manifest.path}); "
            f"{len(to_run)} to run")
    if not to_run:
        say(f"nothing to run: {len(jobs) - len(skipped_failed)} done, {len(skipped_failed)} failed before "
            f"({duration(time.monotonic() - started)})")
        return SOME_FAILED if skipped_failed else 0

    progress = Progress(len(to_run))
    runner = worker = None
    try:
        if opts.ray is None:
            worker, infos = _start_local(opts, progress)
        else:
            runner, infos = _start_ray(opts, progress)
        object_info = infos[0]["object_info"]
        base = _base_workflow(ui, object_info, infos[0]["model_names"], opts, progress)
        resolved = resolve_jobs(to_run, base, object_info, files_base, source=str(opts.jobs))
        reports = {worker_name(i): worker.check(base) for i in infos} if worker else runner.check(base)
        problems = _check_problems(reports, resolved, base, object_info)
        if problems:
            raise Refused("the workers cannot run this workflow:\n" + "\n".join(f"  {p}" for p in problems))
        tasks = [_task(r, base, object_info, fingerprints[r.id]) for r in resolved]
        batch = Batch(out, manifest, tasks, progress)
        if worker is not None:
            from .local import run_local

            run_local(batch, worker, worker_name(infos[0]))
        else:
            runner.run(batch, acceptable=lambda report: not _check_problems({"new": report}, resolved, base,
                                                                             object_info))
    finally:
        progress.close()
        if runner is not None:
            runner.shutdown()
        if worker is not None:
            worker.close()
    return _summary(batch, jobs, manifest, started)


def worker_name(info: dict) -> str:
    return f"{info['label']}@{info['host']}"


def _start_local(opts: BatchOptions, progress: Progress):
    from .worker import BatchWorker

    progress.line("starting ComfyUI in this process (the embedded default; --ray runs jobs on Ray workers)")
    from ..inprocess import ComfyNotFound

    worker = BatchWorker("local", opts.small_models, opts.base_dir, opts.threads, opts.verbose)
    try:
        info = worker.setup()
    except (ComfyNotFound, RuntimeError) as exc:
        worker.close()
        raise Refused(f"ComfyUI did not start here: {exc}") from None
    progress.line(f"ComfyUI {info['version']} at {info['comfyui']} ready: {info['device']}, "
                  f"{info['threads']} torch thread(s), pid {info['pid']}")
    return worker, [info]


def _start_ray(opts: BatchOptions, progress: Progress):
    from .ray_runner import RayMissing, RayRunner, StartFailed

    try:
        runner = RayRunner(opts.ray, opts.workers, opts.threads, opts.small_models, opts.base_dir, opts.verbose,
                           progress)
    except RayMissing as exc:
        raise Refused(str(exc)) from None
    try:
        count = runner.connect()
        return runner, runner.start(count)
    except StartFailed as exc:
        runner.shutdown()
        raise Refused("workers did not start:\n" + "\n".join(f"  {p}" for p in exc.problems)) from None
    except BaseException:
        runner.shutdown()
        raise


def _base_workflow(ui: dict, object_info: dict, names: dict, opts: BatchOptions, progress: Progress) -> dict:
    if not opts.small_models:
        return ui
    from ...workflow.build import BuildError, SmallRun, small_variant

    run = SmallRun()
    progress.line(f"--small-models: model files swapped for the built-in small random ones ({', '.join(names.values())})"
                  f" and CPU sizes: still {run.still[0]}x{run.still[1]}, video {run.video[0]}x{run.video[1]}, "
                  f"{run.frames} frames, {run.steps} steps per sampler; the videos are noise")
    try:
        return small_variant(ui, object_info, names, run, name=str(opts.workflow))
    except BuildError as exc:
        raise Refused(f"--small-models: {exc}") from None


def _check_problems(reports: dict, resolved: list, base: dict, object_info: dict) -> list[str]:
    """What the workers lack. A model file every job replaces with its own is not needed;
    a file only some jobs name is checked by ComfyUI when such a job runs."""
    problems = []
    nodes = {str(n["id"]): n for n in base.get("nodes") or []}
    for name, report in reports.items():
        for err in report.get("errors") or []:
            problems.append(f"{name}: {err}")
        for need in report.get("missing") or []:
            node = nodes.get(str(need["node"]))
            if node is not None and resolved and all(_replaces(r, node, need["name"], object_info) for r in resolved):
                continue
            problems.append(f"{name}: missing {need['folder']}/{need['name']} (node {need['node']} "
                            f"{need['node_type']})")
    return problems


def _replaces(resolved, node: dict, file_name: str, object_info: dict) -> bool:
    values = widget_values_by_name(object_info[node["type"]], list(node.get("widgets_values") or []))
    return any(values.get(inp) == file_name for inp in resolved.overrides(node["id"]))


def _task(resolved, base: dict, object_info: dict, fingerprint: str) -> Task:
    ui = apply_job(base, object_info, resolved)
    try:
        prompt = ui_to_api(ui, object_info)
    except ConversionError as exc:
        raise JobsFileError("jobs", [f"line {resolved.job.line} (job {resolved.id!r}): {exc}"]) from None
    payload = {"id": resolved.id, "workflow": ui, "prompt": prompt, "inputs": resolved.input_files}
    return Task(resolved.id, payload, fingerprint)


def _summary(batch: Batch, jobs: list, manifest: Manifest, started: float) -> int:
    states = {j.id: (manifest.get(j.id) or {}).get("status") for j in jobs}
    done = sum(1 for s in states.values() if s == DONE)
    failed = sum(1 for s in states.values() if s == FAILED)
    ran = list(batch.results.values())
    left = len(jobs) - done - failed
    say(f"finished in {duration(time.monotonic() - started)}: {done} done, {failed} failed"
        + (f", {left} not run" if left else "")
        + f" of {len(jobs)} (this run: {ran.count(DONE)} done, {ran.count(FAILED)} failed); manifest {manifest.path}")
    if batch.peak_rss:
        say("peak RSS per worker: " + ", ".join(f"{w} {mb} MB" for w, mb in sorted(batch.peak_rss.items())))
    if batch.abandoned or (batch.stopping and left):
        return INTERRUPTED_EXIT
    return 0 if failed == 0 and left == 0 else SOME_FAILED
