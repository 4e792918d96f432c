"""The embedded default: jobs one after another in this process's own ComfyUI, and Ctrl+C."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

from .dispatch import Batch
from .worker import BatchWorker


@contextmanager
def ctrl_c(batch: Batch, abandon):
    """First Ctrl+C: hand out no more jobs, let running ones finish. Second: ``abandon()`` them.
    A third gives Python's own KeyboardInterrupt. Outside the main thread signals cannot be
    caught, and nothing is installed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    presses = []

    def handler(signum, frame):
        presses.append(signum)
        if len(presses) == 1:
            batch.stop()
            running = len(batch.running)
            batch.progress.line(f"Ctrl+C: no more jobs are started; waiting for {running} running job(s) to "
                                "finish (Ctrl+C again abandons them)")
        elif len(presses) == 2:
            batch.progress.line("Ctrl+C again: abandoning the running job(s)")
            abandon()
            signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_local(batch: Batch, worker: BatchWorker, name: str) -> None:
    with ctrl_c(batch, worker.interrupt), batch.progress.ticking():
        while True:
            task = batch.next_task()
            if task is None:
                return
            batch.started(task, name)
            result = worker.run(task.payload)
            batch.finished(task, result, name)
