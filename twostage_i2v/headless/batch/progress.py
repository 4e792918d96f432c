"""The batch's console: one line per event, and a progress bar over the jobs.

On a terminal the bar stays on the last line and is redrawn in place; elsewhere (a log, a
pipe, CI) it is printed as a plain status line after each finished job.
"""

from __future__ import annotations

import sys
import threading
import time

BAR_WIDTH = 24


def duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m:02d}m"
    return f"{m}m{s:02d}s" if m else f"{s}s"


class Progress:
    def __init__(self, total: int, stream=None, clock=time.monotonic):
        self.total = total
        self.stream = stream or sys.stdout
        self.clock = clock
        self.started = clock()
        self.first_job_at: float | None = None
        self.done = self.failed = self.running = 0
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._bar_shown = False
        self._lock = threading.RLock()  # a ticker thread may redraw while a line is printed

    def line(self, text: str) -> None:
        """A per-job or per-worker line, printed above the bar."""
        with self._lock:
            self._clear()
            print(f"[batch] {text}", file=self.stream, flush=True)
            self._draw()

    def ticking(self):
        """A context in which a thread redraws the bar every second (elapsed time moves on
        while a job runs in this process)."""
        return _Ticker(self)

    def job_started(self) -> None:
        if self.first_job_at is None:
            self.first_job_at = self.clock()
        self.running += 1
        self._draw()

    def job_ended(self, status: str | None) -> None:
        """``status`` done / failed, or None for a job that goes back to the queue (or is abandoned)."""
        self.running = max(0, self.running - 1)
        if status == "done":
            self.done += 1
        elif status == "failed":
            self.failed += 1
        if status is not None and not self.tty:
            print(f"[batch] {self.status()}", file=self.stream, flush=True)
        self._draw()

    def tick(self) -> None:
        self._draw()

    def estimate(self) -> float | None:
        """Seconds left, from this run's pace so far; None before the first job ends."""
        finished = self.done + self.failed
        if not finished or self.first_job_at is None:
            return None
        pace = (self.clock() - self.first_job_at) / finished
        return pace * (self.total - finished)

    def status(self) -> str:
        finished = self.done + self.failed
        filled = int(BAR_WIDTH * finished / self.total) if self.total else BAR_WIDTH
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        left = self.estimate()
        eta = f"about {duration(left)} left" if left is not None else "estimate after the first job"
        if finished == self.total:
            eta = "finished"
        return (f"[{bar}] {finished}/{self.total}: {self.done} done, {self.failed} failed, {self.running} running"
                f" | {duration(self.clock() - self.started)} elapsed, {eta}")

    def _draw(self) -> None:
        if self.tty:
            with self._lock:
                self.stream.write("\r\x1b[2K" + self.status())
                self.stream.flush()
                self._bar_shown = True

    def _clear(self) -> None:
        if self.tty and self._bar_shown:
            self.stream.write("\r\x1b[2K")
            self._bar_shown = False

    def close(self) -> None:
        if self.tty and self._bar_shown:
            self.stream.write("\n")
            self.stream.flush()
            self._bar_shown = False


class _Ticker:
    def __init__(self, progress: Progress):
        self.progress = progress
        self.stop = threading.Event()
        self.thread = None

    def __enter__(self):
        if self.progress.tty:
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()
        return self

    def _run(self):
        while not self.stop.wait(1.0):
            self.progress.tick()

    def __exit__(self, *exc):
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=2)
        return False
