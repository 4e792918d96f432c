"""A batch's record of finished jobs, ``DIR/manifest.jsonl``, and what resume does with it.

One line per finished job: ``id``, ``status`` (``done`` / ``failed``), ``outputs`` (file
names in DIR with their sha256), ``seconds``, ``worker``, ``message`` for a failure, plus
``attempts`` and the job's ``fingerprint`` (what resume compares). The file, like every
output, is written to a temporary file and renamed into place, so a crash leaves either
the old manifest or the new one, never half a line.

Pure library code (no ComfyUI).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

MANIFEST_NAME = "manifest.jsonl"
DONE, FAILED = "done", "failed"
_TEMP = re.compile(r"^\..+\.tmp-\d+$")


def write_atomic(path: Path, data: bytes) -> None:
    """``path`` holds ``data`` completely or keeps what it held: temp file, fsync, rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some systems cannot open a folder; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temps(folder: Path) -> list[Path]:
    """Temp files a killed run left behind (only ours: ``.<name>.tmp-<pid>``)."""
    gone = []
    for p in Path(folder).iterdir() if Path(folder).is_dir() else []:
        if p.is_file() and _TEMP.match(p.name):
            p.unlink()
            gone.append(p)
    return gone


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Manifest:
    """The manifest of one output folder: read at start, rewritten whole after each job."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / MANIFEST_NAME
        self.records: dict[str, dict] = {}
        self.warnings: list[str] = []
        if self.path.is_file():
            self._load()

    def _load(self) -> None:
        for number, raw in enumerate(self.path.read_text(encoding="utf-8").splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
            except json.JSONDecodeError:
                self.warnings.append(f"{self.path} line {number}: not JSON, ignored")
                continue
            if not isinstance(rec, dict) or not isinstance(rec.get("id"), str):
                self.warnings.append(f"{self.path} line {number}: not a job record, ignored")
                continue
            self.records[rec["id"]] = rec  # a later line for the same id wins

    def get(self, job_id: str) -> dict | None:
        return self.records.get(job_id)

    def record(self, rec: dict) -> None:
        """Add or replace the job's line and write the whole file atomically."""
        self.records.pop(rec["id"], None)
        self.records[rec["id"]] = rec
        text = "".join(json.dumps(r, ensure_ascii=False, sort_keys=False) + "\n" for r in self.records.values())
        write_atomic(self.path, text.encode("utf-8"))

    def vouches_for(self, name: str) -> bool:
        """Whether ``DIR/name`` is, byte for byte, a file a recorded job wrote."""
        path = self.folder / name
        for rec in self.records.values():
            for out in rec.get("outputs") or []:
                if out.get("file") == name:
                    return path.is_file() and sha256_file(path) == out.get("sha256")
        return False


@dataclass
class Decision:
    run: bool
    reason: str  # why, for the per-job line


def decide(rec: dict | None, fingerprint: str, folder: Path, retry_failed: bool) -> Decision:
    """Whether resume runs a job again, from its manifest line and the files in ``folder``."""
    if rec is None:
        return Decision(True, "new")
    if rec.get("fingerprint") != fingerprint:
        return Decision(True, "its values or the workflow changed since it ran")
    if rec.get("status") == FAILED:
        if retry_failed:
            return Decision(True, "failed before; --retry-failed")
        return Decision(False, f"failed before ({rec.get('message', '')}); --retry-failed runs it again")
    if rec.get("status") != DONE:
        return Decision(True, f"unknown status {rec.get('status')!r}")
    outputs = rec.get("outputs") or []
    if not outputs:
        return Decision(True, "no outputs recorded")
    for out in outputs:
        path = Path(folder) / str(out.get("file"))
        if not path.is_file():
            return Decision(True, f"{path.name} is missing")
        if sha256_file(path) != out.get("sha256"):
            return Decision(True, f"{path.name} differs from what the batch wrote")
    return Decision(False, "done, outputs unchanged")


def kept_name(folder: Path, name: str) -> Path:
    """A free name to keep a file the batch did not write: ``a.mp4`` -> ``a.kept-1.mp4``."""
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    for n in range(1, 10_000):
        candidate = Path(folder) / (f"{stem}.kept-{n}.{ext}" if ext else f"{stem}.kept-{n}")
        if not candidate.exists():
            return candidate
    raise FileExistsError(f"{folder}: too many kept copies of {name}")
