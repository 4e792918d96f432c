"""Jobs across Ray workers: one actor per worker (``num_gpus=1`` where the cluster has GPUs),
each owning an in-process ComfyUI that keeps its models loaded across jobs.

``--ray local`` starts a Ray instance on this machine; ``auto`` or an address joins a
running cluster (``ray start --head`` on one machine, ``ray start --address=HOST:6379`` on
the others). A worker process that dies mid-job is replaced and its job handed to the next
free worker. Ray is an optional extra: nothing here imports it until a batch asks for it.
"""

from __future__ import annotations

import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from ..inprocess import REPO_ROOT
from .dispatch import Batch, Task
from .local import ctrl_c
from .worker import BatchWorker

BOOTING, CHECKING, IDLE, BUSY = "booting", "checking", "idle", "busy"
LOCAL_OBJECT_STORE = 512 * 1024 * 1024  # results are a few MB each and are fetched at once
PASSED_ENV = ("COMFYUI_PATH", "TWOSTAGE_COMFYUI_TREE", "TWOSTAGE_MODEL_CACHE")


class RayMissing(RuntimeError):
    pass


class StartFailed(RuntimeError):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


def import_ray():
    try:
        import ray
    except ImportError:
        raise RayMissing("--ray needs Ray, an optional extra: pip install 'comfyui-twostage-i2v[ray]' "
                         "(or pip install -r requirements-ray.txt in this checkout)") from None
    return ray


@dataclass
class Slot:
    label: str
    actor: object
    state: str = BOOTING
    ref: object = None
    task: Task | None = None
    info: dict | None = None
    since: float = 0.0

    @property
    def name(self) -> str:
        host = (self.info or {}).get("host")
        return f"{self.label}@{host}" if host else self.label


class RayRunner:
    def __init__(self, address: str, workers: int | None, threads: int | None, small_models: bool,
                 base_dir: str | None, verbose: bool, progress, start_timeout: float = 1800.0):
        if address != "local":
            _use_cluster_token()  # read by Ray when it is imported
        self.ray = import_ray()
        self.address = address
        self.requested = workers
        self.threads = threads
        self.small_models = small_models
        self.base_dir = base_dir
        self.verbose = verbose
        self.progress = progress
        self.start_timeout = start_timeout
        self.slots: list[Slot] = []
        self.labels = 0
        self.respawns_left = 0
        self.gpus = 0
        self.workflow = None  # the base workflow a new worker is checked against

    # -- cluster -----------------------------------------------------------------------

    def connect(self) -> int:
        """Join or start Ray; return how many workers to run."""
        ray = self.ray
        env = {k: os.environ[k] for k in PASSED_ENV if os.environ.get(k)}
        # Workers import this package from the same path as here (a checkout in ComfyUI's custom_nodes).
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
        kwargs = dict(runtime_env={"env_vars": env}, log_to_driver=self.verbose, include_dashboard=False)
        unreachable = _unreachable(self.address)
        if unreachable:
            raise StartFailed([unreachable])
        try:
            if self.address == "local":
                cpus = os.cpu_count() or 1
                workers = self.requested or 1
                self.threads = self.threads or max(1, cpus // workers)
                ray.init(address="local", num_cpus=max(cpus, workers * self.threads),
                         object_store_memory=LOCAL_OBJECT_STORE, **kwargs)
            else:
                ray.init(address=self.address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            hint = ("" if self.address == "local" else
                    "; start a cluster with `ray start --head` (and `ray start --address=...` on the other "
                    "machines), or use --ray local")
            raise StartFailed([f"could not {'start' if self.address == 'local' else 'join'} Ray "
                               f"({self.address}): {exc}{hint}"]) from None
        resources = ray.cluster_resources()
        self.gpus = int(resources.get("GPU", 0))
        cpus = int(resources.get("CPU", 0))
        workers = self.requested or max(1, self.gpus)
        if self.gpus and workers > self.gpus:
            raise StartFailed([f"{workers} workers asked for, but the cluster has {self.gpus} GPU(s): one worker "
                               f"per GPU; use --workers {self.gpus} or add machines"])
        need = workers * (self.threads or 1)
        if need > cpus:
            raise StartFailed([f"{workers} workers of {self.threads or 1} CPU(s) each need {need} CPUs; the cluster "
                               f"has {cpus}: lower --workers or --threads"])
        self.respawns_left = 2 * workers
        where = "a local Ray instance" if self.address == "local" else f"the Ray cluster at {self.address}"
        gpu_text = f"{self.gpus} GPU(s), one per worker" if self.gpus else "no GPU"
        self.progress.line(f"{where}: {cpus} CPU(s), {gpu_text}; {workers} worker(s)")
        return workers

    def _spawn(self) -> Slot:
        self.labels += 1
        label = f"w{self.labels}"
        actor_class = self.ray.remote(num_cpus=self.threads or 1, num_gpus=1 if self.gpus else 0,
                                      max_restarts=0, max_task_retries=0)(BatchWorker)
        actor = actor_class.remote(label, self.small_models, self.base_dir, self.threads, self.verbose)
        slot = Slot(label, actor, BOOTING, actor.setup.remote(), since=time.monotonic())
        self.slots.append(slot)
        return slot

    def start(self, workers: int) -> list[dict]:
        """Start the workers and wait until each has booted; ``StartFailed`` names what went wrong where."""
        for _ in range(workers):
            self._spawn()
        problems = []
        deadline = time.monotonic() + self.start_timeout
        for slot in list(self.slots):
            try:
                slot.info = self.ray.get(slot.ref, timeout=max(1.0, deadline - time.monotonic()))
                slot.state, slot.ref = IDLE, None
                self._announce(slot)
            except self.ray.exceptions.GetTimeoutError:
                problems.append(f"{slot.label}: did not start within {self.start_timeout:.0f} s (not enough free "
                                "CPUs/GPUs in the cluster?)")
            except self.ray.exceptions.RayError as exc:
                problems.append(f"{slot.label}: could not start: {_cause(exc)}{_install_hint(exc)}")
        if problems:
            raise StartFailed(problems)
        return [s.info for s in self.slots]

    def _announce(self, slot: Slot) -> None:
        i = slot.info
        self.progress.line(f"worker {slot.label} ready: pid {i['pid']} on {i['host']}, ComfyUI {i['version']} at "
                           f"{i['comfyui']}, {i['device']}, {i['threads']} torch thread(s), "
                           f"peak RSS {i['peak_rss_mb']} MB")

    def check(self, workflow: dict) -> dict[str, dict]:
        """Each worker's view of the base workflow: worker name -> {"errors", "missing"}."""
        self.workflow = workflow
        refs = {s.name: s.actor.check.remote(workflow) for s in self.slots}
        return {name: self.ray.get(ref) for name, ref in refs.items()}

    def shutdown(self) -> None:
        for slot in self.slots:
            try:
                self.ray.kill(slot.actor)
            except Exception:
                pass
        self.slots = []
        if self.ray.is_initialized():
            self.ray.shutdown()

    # -- jobs --------------------------------------------------------------------------

    def run(self, batch: Batch, acceptable) -> None:
        """Hand out jobs until the queue is empty (or Ctrl+C). ``acceptable(check_report)``
        tells whether a replacement worker may take jobs."""
        # The signal handler only raises a flag: the loop below changes the worker list.
        abandon = []
        with ctrl_c(batch, lambda: abandon.append(True)):
            while True:
                if abandon:
                    self._abandon(batch)
                    return
                self._hand_out(batch)
                # Once stopping, only running jobs are waited for; workers still starting are not.
                waiting = [s.ref for s in self.slots
                           if s.ref is not None and (s.state == BUSY or (batch.pending and not batch.stopping))]
                if not waiting:
                    if batch.pending and not batch.stopping:
                        batch.progress.line(f"no worker left to run the {batch.pending} remaining job(s); they are "
                                            "not recorded and run next time")
                    return
                ready, _ = self.ray.wait(waiting, num_returns=1, timeout=0.5)
                for ref in ready:
                    slot = next((s for s in self.slots if s.ref == ref), None)
                    if slot is not None:
                        self._answer(batch, slot, acceptable)
                batch.progress.tick()

    def _hand_out(self, batch: Batch) -> None:
        for slot in self.slots:
            if slot.state != IDLE:
                continue
            task = batch.next_task()
            if task is None:
                return
            slot.state, slot.task = BUSY, task
            slot.ref = slot.actor.run.remote(task.payload)
            batch.started(task, slot.name)

    def _answer(self, batch: Batch, slot: Slot, acceptable) -> None:
        ray = self.ray
        ref, slot.ref = slot.ref, None
        try:
            value = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # our code raised (setup, check): not a lost process
            self._task_error(batch, slot, _cause(exc))
            return
        except ray.exceptions.RayError as exc:  # the process (or its machine) went away
            self._lost(batch, slot, _cause(exc))
            return
        if slot.state == BUSY:
            task, slot.task, slot.state = slot.task, None, IDLE
            batch.finished(task, value, slot.name)
        elif slot.state == BOOTING:
            slot.info = value
            slot.state, slot.ref = CHECKING, slot.actor.check.remote(self.workflow)
        elif slot.state == CHECKING:
            if acceptable(value):
                slot.state = IDLE
                self._announce(slot)
            else:
                batch.progress.line(f"replacement worker {slot.name} cannot run the workflow: {value}; not used")
                self._drop(slot)

    def _task_error(self, batch: Batch, slot: Slot, message: str) -> None:
        if slot.state == BUSY:
            task, slot.task, slot.state = slot.task, None, IDLE
            batch.finished(task, {"status": "failed", "message": message}, slot.name)
        else:
            batch.progress.line(f"replacement worker {slot.label} could not start: {message}")
            self._drop(slot)

    def _lost(self, batch: Batch, slot: Slot, reason: str) -> None:
        task = slot.task
        self._drop(slot)
        if task is not None:
            batch.lost(task, slot.name, f"worker process died: {reason}")
        else:
            batch.progress.line(f"worker {slot.name} died while starting: {reason}")
        if batch.pending and not batch.stopping and self.respawns_left > 0:
            self.respawns_left -= 1
            new = self._spawn()
            batch.progress.line(f"starting worker {new.label} in place of {slot.label}")

    def _drop(self, slot: Slot) -> None:
        try:
            self.ray.kill(slot.actor)
        except Exception:
            pass
        self.slots.remove(slot)

    def _abandon(self, batch: Batch) -> None:
        batch.abandon_running()
        for slot in list(self.slots):
            if slot.state != IDLE:
                slot.task = None
                self._drop(slot)


def _cause(exc) -> str:
    """Ray's error text cut to what a user needs: why the worker ended."""
    text = " ".join(str(exc).split())
    if "Worker exit detail:" in text:
        kind = re.search(r"Worker exit type: (\w+)", text)
        detail = text.split("Worker exit detail:", 1)[1].strip()
        detail = detail.split(". ", 1)[0].rstrip(".")[:300]
        memory = "OUT_OF_MEMORY" in text or "low on memory" in text.lower()
        return ("the machine ran low on memory; " if memory else "") + (
            f"{kind.group(1)}: {detail}" if kind else detail)
    lines = [t for t in str(exc).strip().splitlines() if t.strip() and not t.startswith("Traceback")]
    return " ".join(lines[-3:])[:600] if lines else type(exc).__name__


def _unreachable(address: str) -> str | None:
    """Why nothing answers at a HOST:PORT address (Ray itself retries for minutes), or None."""
    if address in ("local", "auto"):
        return None
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return (f"--ray {address!r}: give local, auto, or the head's HOST:PORT (as `ray start --head` prints it, "
                "e.g. 192.168.1.10:6379)")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            return None
    except OSError as exc:
        return (f"nothing answers at {hostport} ({exc.strerror or exc}): start the head there with "
                f"`ray start --head --port={port}`, or use --ray local")


def _use_cluster_token() -> None:
    """Ray 2.60's ``ray start --head`` turns token authentication on, but a driver joining it
    only sends the token (``~/.ray/auth_token``) when RAY_AUTH_MODE says so."""
    if os.environ.get("RAY_AUTH_MODE"):
        return
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH") or \
            (Path.home() / ".ray" / "auth_token").is_file():
        os.environ["RAY_AUTH_MODE"] = "token"


def _install_hint(exc) -> str:
    text = str(exc)
    if "ModuleNotFoundError" in text and "twostage_i2v" in text:
        return (f" (this package is not importable on that machine: install ComfyUI-TwoStage-I2V at {REPO_ROOT} "
                "there, as here, or put its folder on the workers' PYTHONPATH)")
    return ""
