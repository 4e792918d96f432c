"""The driver's side of a batch: which job runs next, what a result means, and writing it.

Runners (local, Ray) ask ``next_task()`` for work and report back with ``finished()``
(the worker answered) or ``lost()`` (the worker process died). Outputs and manifest lines
are written here only, by one process, each through a temporary file and a rename: a job
whose worker died leaves nothing in the output folder.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ...workflow.manifest import DONE, FAILED, Manifest, kept_name, sha256_bytes, write_atomic
from .progress import Progress
from .worker import INTERRUPTED, RETRY

MAX_RETRIES = 2  # a job whose worker dies gets this many more tries on other workers


@dataclass
class Task:
    id: str
    payload: dict  # what the worker runs: id, workflow, prompt, inputs
    fingerprint: str
    attempts: int = 0
    losses: list = field(default_factory=list)  # why earlier attempts ended without an answer


def output_names(job_id: str, files: list[dict]) -> list[str]:
    """``<id>.mp4``, ``<id>.png`` for the first file of each kind; ``<id>_2.png`` ... after."""
    names, seen = [], {}
    for f in files:
        ext = PurePosixPath(f["filename"]).suffix.lower()
        seen[ext] = seen.get(ext, 0) + 1
        names.append(f"{job_id}{ext}" if seen[ext] == 1 else f"{job_id}_{seen[ext]}{ext}")
    return names


class Batch:
    def __init__(self, out_dir: Path, manifest: Manifest, tasks: list[Task], progress: Progress,
                 max_retries: int = MAX_RETRIES):
        self.out_dir = Path(out_dir)
        self.manifest = manifest
        self.queue: deque[Task] = deque(tasks)
        self.progress = progress
        self.max_retries = max_retries
        self.running: dict[str, tuple[Task, str]] = {}
        self.stopping = False
        self.results: dict[str, str] = {}  # id -> done / failed, this run
        self.abandoned: list[str] = []
        self.peak_rss: dict[str, int] = {}  # worker -> MB

    # -- handing out -------------------------------------------------------------------

    def next_task(self) -> Task | None:
        if self.stopping or not self.queue:
            return None
        return self.queue.popleft()

    def started(self, task: Task, worker: str) -> None:
        task.attempts += 1
        self.running[task.id] = (task, worker)
        again = f" (attempt {task.attempts})" if task.attempts > 1 else ""
        self.progress.line(f"start {task.id} on {worker}{again}")
        self.progress.job_started()

    def stop(self) -> None:
        """No more jobs are handed out; running ones may finish."""
        self.stopping = True

    @property
    def pending(self) -> int:
        return len(self.queue)

    # -- answers -----------------------------------------------------------------------

    def finished(self, task: Task, result: dict, worker_name: str) -> None:
        """The worker answered: done, failed (not retried), retry (ran short of memory) or interrupted."""
        self.running.pop(task.id, None)
        if "peak_rss_mb" in result:
            self.peak_rss[worker_name] = max(self.peak_rss.get(worker_name, 0), int(result["peak_rss_mb"]))
        status = result.get("status")
        if status == INTERRUPTED:
            self._abandon(task)
            return
        if status == RETRY:
            self.lost(task, worker_name, result.get("message", "ran short of memory"))
            return
        if status == "done":
            outputs = self._write_outputs(task, result["files"])
            self._record(task, DONE, worker_name, result.get("seconds"), outputs=outputs)
            kinds = ", ".join(o["file"] for o in outputs)
            self.progress.line(f"done {task.id} in {result.get('seconds', 0):.1f} s on {worker_name}: {kinds}")
        else:
            message = result.get("message") or "failed without a message"
            self._record(task, FAILED, worker_name, result.get("seconds"), message=message)
            self.progress.line(f"FAILED {task.id} on {worker_name}: {message}")
        self.progress.job_ended(self.results[task.id])

    def lost(self, task: Task, worker_name: str, reason: str) -> None:
        """The worker went away mid-job: the job goes back to the queue, at most ``max_retries`` times."""
        self.running.pop(task.id, None)
        task.losses.append(f"{worker_name}: {reason}")
        if len(task.losses) > self.max_retries:
            message = (f"its worker process died {len(task.losses)} times while running it "
                       f"({'; '.join(task.losses)})")
            self._record(task, FAILED, worker_name, None, message=message)
            self.progress.line(f"FAILED {task.id}: {message}")
            self.progress.job_ended(FAILED)
            return
        self.queue.appendleft(task)
        self.progress.line(f"{worker_name} was lost while running {task.id} ({reason}); the job goes back to the "
                           f"queue (retry {len(task.losses)} of {self.max_retries})")
        self.progress.job_ended(None)

    def abandon_running(self) -> None:
        """Ctrl+C twice: the running jobs are dropped, unrecorded, and run again next time."""
        for task, _ in list(self.running.values()):
            self._abandon(task)

    def _abandon(self, task: Task) -> None:
        self.running.pop(task.id, None)
        if task.id not in self.abandoned:
            self.abandoned.append(task.id)
            self.progress.line(f"abandoned {task.id}: not recorded, the next run does it")
            self.progress.job_ended(None)

    # -- writing -----------------------------------------------------------------------

    def _write_outputs(self, task: Task, files: list[dict]) -> list[dict]:
        outputs = []
        for name, f in zip(output_names(task.id, files), files):
            target = self.out_dir / name
            if target.exists() and not self.manifest.vouches_for(name):
                keep = kept_name(self.out_dir, name)
                target.rename(keep)
                self.progress.line(f"{target} was not written by this batch; kept it as {keep.name}")
            write_atomic(target, f["data"])
            outputs.append({"file": name, "sha256": sha256_bytes(f["data"]), "bytes": len(f["data"]),
                            "node": f.get("node")})
        return outputs

    def _record(self, task: Task, status: str, worker: str, seconds, outputs=None, message=None) -> None:
        rec = {"id": task.id, "status": status, "outputs": outputs or [],
               "seconds": None if seconds is None else round(float(seconds), 3), "worker": worker,
               "attempts": task.attempts, "fingerprint": task.fingerprint}
        if message:
            rec["message"] = message
        self.manifest.record(rec)
        self.results[task.id] = status
