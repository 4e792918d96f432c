"""One batch worker: an in-process ComfyUI that keeps its models loaded and runs one job at a time.

The local runner uses it in the batch's own process; the Ray runner makes it an actor, one
process per worker (per GPU where there are GPUs). Jobs arrive as a UI workflow (embedded in
the outputs) plus its API prompt, both made by the batch's driver; results go back as bytes,
so a worker on another machine needs no shared disk. Each worker works in a folder of its
own (input/, output/, temp/), so workers never see each other's files.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

from .. import inprocess

DONE, FAILED, RETRY, INTERRUPTED = "done", "failed", "retry", "interrupted"
# ComfyUI exception types that say the machine ran short, not that the job is wrong.
RESOURCE_ERRORS = ("OutOfMemoryError", "MemoryError")


def peak_rss_mb() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)  # Linux reports KiB


class BatchWorker:
    """``setup()`` boots ComfyUI (once per process); ``run(job)`` runs one job."""

    def __init__(self, label: str, small_models: bool = False, base_dir: str | None = None,
                 threads: int | None = None, verbose: bool = False):
        self.label = label
        self.small_models = small_models
        self.base_dir = base_dir
        self.threads = threads
        self.verbose = verbose
        self.rt = None
        self.executor = None
        self.object_info = None
        self.work = None

    # -- start -------------------------------------------------------------------------

    def setup(self) -> dict:
        """Boot ComfyUI with this package; return what the driver needs to know about this worker."""
        import torch

        if self.threads:
            torch.set_num_threads(int(self.threads))
        self.work = Path(tempfile.mkdtemp(prefix=f"twostage-batch-{self.label}-"))
        for sub in ("input", "output", "temp"):
            (self.work / sub).mkdir()
        gpu = torch.cuda.is_available()
        # On a GPU, ComfyUI's own defaults; on a CPU, inprocess.boot's (fp32 everywhere).
        extra = {"cpu": False, "fp32_text_enc": False} if gpu else {}
        if self.small_models:
            base = self.work / "base"
        elif self.base_dir:
            base = Path(self.base_dir)
        else:
            base = inprocess.comfyui_root()
            if base in inprocess.BUNDLED_TREES.values():
                # The test trees hold no models, and other checkouts share them: never write there.
                raise RuntimeError(f"no ComfyUI of yours to take the models from (only the bundled test tree "
                                   f"{base}): set COMFYUI_PATH, pass --base-dir DIR (a ComfyUI base directory "
                                   "with models/), or use --small-models")
        with self._quiet_stdout():
            rt = inprocess.boot(base, extra_args=extra, output_dir=self.work / "output")
        import folder_paths

        folder_paths.set_input_directory(str(self.work / "input"))
        folder_paths.set_temp_directory(str(self.work / "temp"))
        failed = [str(m) for m in rt.import_failed if inprocess.PACKAGE_DIR_NAME in str(m)]
        if failed:
            raise RuntimeError(f"ComfyUI at {rt.root} could not load {inprocess.PACKAGE_DIR_NAME}: {failed}")
        names = self._install_small_models(base) if self.small_models else {}
        if not self.verbose:
            import comfy.utils

            logging.getLogger().setLevel(logging.WARNING)
            comfy.utils.set_progress_bar_enabled(False)
        from ..object_info import object_info_in_process

        self.rt = rt
        self.object_info = object_info_in_process(rt.nodes)
        self.executor = rt.new_executor()
        device = f"cuda ({torch.cuda.get_device_name(0)})" if gpu else "cpu"
        return {
            "label": self.label, "host": socket.gethostname(), "pid": os.getpid(),
            "comfyui": str(rt.root), "version": rt.version, "package": str(inprocess.REPO_ROOT),
            "device": device, "threads": torch.get_num_threads(), "model_names": names,
            "object_info": self.object_info, "peak_rss_mb": peak_rss_mb(),
        }

    def _install_small_models(self, base: Path) -> dict:
        # Workers on one machine share the model cache: the first builds, the others wait for it.
        from filelock import FileLock

        from .. import demo_graph

        cache = demo_graph.tiny_models.cache_dir()
        with FileLock(str(cache / ".batch-install.lock")), self._quiet_stdout():
            return demo_graph.install_models(base)

    def _quiet_stdout(self):
        # ComfyUI prints while it works; the batch's progress owns stdout.
        return contextlib.redirect_stdout(sys.stderr)

    def check(self, workflow: dict) -> dict:
        """What this worker lacks to run the workflow: node errors and missing files, by node."""
        from ...workflow.validate import validate

        report = validate(workflow, self.object_info)
        return {
            "errors": [str(f) for f in report.errors],
            "missing": [{"folder": f.folder, "name": f.name, "node": f.node, "node_type": f.node_type}
                        for f in report.missing_files],
        }

    # -- jobs --------------------------------------------------------------------------

    def run(self, job: dict) -> dict:
        """Run one job: ``{"id", "workflow", "prompt", "inputs": {name: bytes}}``."""
        started = time.monotonic()
        out_dir = self.work / "output"
        self._empty(out_dir)
        for name, data in (job.get("inputs") or {}).items():
            (self.work / "input" / name).write_bytes(data)
        try:
            with self._quiet_stdout():
                result = self._execute(job)
        except Exception as exc:  # a bug or a broken environment: report it, do not kill the worker
            self.executor.reset()
            result = {"status": FAILED, "message": f"{type(exc).__name__}: {exc}"}
        if result["status"] == DONE:
            files = []
            for path in self._saved_files(result.pop("outputs"), out_dir):
                files.append({"node": path[0], "filename": path[1].name, "data": path[1].read_bytes()})
            if not files:
                result = {"status": FAILED, "message": "the workflow ran but saved no file (no SaveVideo/SaveImage?)"}
            else:
                result["files"] = files
        self._empty(out_dir)
        result.update(seconds=round(time.monotonic() - started, 3), worker=self.label, peak_rss_mb=peak_rss_mb())
        return result

    def _execute(self, job: dict) -> dict:
        from ..inprocess import PromptFailed

        prompt = job["prompt"]
        ok, error, _, node_errors = self.rt.validate(prompt)
        if not ok or node_errors:
            # ComfyUI runs the outputs that validate and drops the rest; a batch wants all or nothing.
            return {"status": FAILED, "message": validation_message(prompt, error, node_errors)}
        try:
            result = self.rt.run_prompt(prompt, extra_data={"extra_pnginfo": {"workflow": job["workflow"]}},
                                        check=False, executor=self.executor)
        except PromptFailed as exc:
            error, node_errors = exc.details
            return {"status": FAILED, "message": validation_message(prompt, error, node_errors)}
        if result.success:
            return {"status": DONE, "outputs": result.outputs}
        self.executor.reset()  # a failed run may leave half-filled caches behind
        if any(event == "execution_interrupted" for event, _ in result.messages):
            return {"status": INTERRUPTED, "message": "interrupted"}
        err = result.error() or {}
        message = execution_message(prompt, err)
        status = RETRY if any(t in str(err.get("exception_type")) for t in RESOURCE_ERRORS) else FAILED
        return {"status": status, "message": message}

    def _saved_files(self, outputs: dict, out_dir: Path) -> list[tuple[str, Path]]:
        from ..demo_graph import saved_files

        found = []
        for node_id in sorted(outputs, key=_node_order):
            for path in saved_files({node_id: outputs[node_id]}, out_dir):
                if path.is_file():
                    found.append((node_id, path))
        return found

    @staticmethod
    def _empty(folder: Path) -> None:
        for p in folder.iterdir():
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()

    def interrupt(self) -> None:
        """Stop the running job at ComfyUI's next check (the local runner's second Ctrl+C)."""
        import comfy.model_management

        comfy.model_management.interrupt_current_processing(True)

    def close(self) -> None:
        if self.work is not None:
            shutil.rmtree(self.work, ignore_errors=True)

    def pid(self) -> int:
        return os.getpid()


def _node_order(node_id: str):
    return (0, int(node_id), "") if str(node_id).isdigit() else (1, 0, str(node_id))


def _node_name(prompt: dict, node_id) -> str:
    entry = prompt.get(str(node_id)) or {}
    title = (entry.get("_meta") or {}).get("title")
    ctype = entry.get("class_type", "?")
    return f"node {node_id} ({title})" if title and title != ctype else f"node {node_id} ({ctype})"


def validation_message(prompt: dict, error, node_errors) -> str:
    """ComfyUI's validation errors in one line: which node, what it says."""
    parts = []
    for node_id, info in (node_errors or {}).items():
        for reason in info.get("errors") or []:
            parts.append(f"{_node_name(prompt, node_id)} {info.get('class_type', '')}: "
                         f"{reason.get('message')}: {reason.get('details')}")
    if not parts and isinstance(error, dict):
        parts.append(f"{error.get('message')}: {error.get('details')}")
    return "ComfyUI refused the prompt: " + "; ".join(parts or [str(error)])


def execution_message(prompt: dict, err: dict) -> str:
    if not err:
        return "ComfyUI reported a failure without a message"
    return (f"{_node_name(prompt, err.get('node_id'))} {err.get('node_type')}: "
            f"{err.get('exception_type')}: {str(err.get('exception_message', '')).strip()}")
