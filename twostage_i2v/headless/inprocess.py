"""Find a ComfyUI tree and drive it in-process (tests, the demo, validate-workflow).

ComfyUI is a program, not a library: importing it needs a fixed order (see
``boot``) and can happen once per process. Nothing here runs at import time.
"""

from __future__ import annotations

import ast
import asyncio
import logging
import os
import sys
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIR_NAME = "ComfyUI-TwoStage-I2V"
BUNDLED_TREES = {
    "0.30.0": REPO_ROOT / ".venv" / "comfyui-0.30.0",
    "0.3.75": REPO_ROOT / ".venv" / "comfyui-0.3.75",
}
DEFAULT_TREE = "0.30.0"


class ComfyNotFound(RuntimeError):
    pass


def comfyui_root(tree: str | None = None) -> Path:
    """The ComfyUI tree to use.

    A user's own ComfyUI wins: ``COMFYUI_PATH``, then the ComfyUI that holds
    this checkout in its ``custom_nodes/``. Otherwise a bundled tree, chosen
    by ``tree`` or ``TWOSTAGE_COMFYUI_TREE`` (``0.30.0`` or ``0.3.75``).
    """
    env = os.environ.get("COMFYUI_PATH")
    if env:
        root = Path(env).expanduser().resolve()
        if not (root / "main.py").is_file():
            raise ComfyNotFound(f"COMFYUI_PATH={env} has no main.py: point it at a ComfyUI checkout")
        return root
    if REPO_ROOT.parent.name == "custom_nodes" and (REPO_ROOT.parent.parent / "main.py").is_file():
        return REPO_ROOT.parent.parent
    name = tree or os.environ.get("TWOSTAGE_COMFYUI_TREE") or DEFAULT_TREE
    if name not in BUNDLED_TREES:
        raise ComfyNotFound(f"unknown ComfyUI tree {name!r}: pick one of {sorted(BUNDLED_TREES)} or set COMFYUI_PATH")
    root = BUNDLED_TREES[name]
    if not (root / "main.py").is_file():
        raise ComfyNotFound(f"ComfyUI {name} is not installed at {root}: run scripts/setup-env.sh")
    return root


def comfyui_version(root: Path) -> str:
    """The ``__version__`` string that ``comfyui_version.py`` assigns, read without running the file."""
    path = root / "comfyui_version.py"
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return "unknown"
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        value = getattr(node, "value", None)
        if (any(isinstance(t, ast.Name) and t.id == "__version__" for t in targets)
                and isinstance(value, ast.Constant) and isinstance(value.value, str)):
            return value.value
    return "unknown"


def link_package(custom_nodes: Path) -> Path:
    """Place this checkout in ``custom_nodes`` as ComfyUI expects to find it."""
    custom_nodes.mkdir(parents=True, exist_ok=True)
    link = custom_nodes / PACKAGE_DIR_NAME
    if link.resolve() == REPO_ROOT:
        return link
    if link.is_symlink():
        link.unlink()
    link.symlink_to(REPO_ROOT, target_is_directory=True)
    return link


def prepare_base_dir(base: Path) -> Path:
    for sub in ("models", "input", "output", "temp", "user"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    link_package(base / "custom_nodes")
    return base


@dataclass
class RunResult:
    prompt_id: str
    success: bool
    outputs: dict
    messages: list = field(default_factory=list)

    def error(self) -> dict | None:
        for event, data in self.messages:
            if event == "execution_error":
                return data
        return None


class PromptFailed(RuntimeError):
    def __init__(self, message: str, details):
        super().__init__(message)
        self.details = details


class _SilentServer:
    """What PromptExecutor needs of PromptServer when there is no web server."""

    def __init__(self):
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.messages: list = []

    def send_sync(self, event, data, sid=None):
        self.messages.append((event, data))

    def queue_updated(self):
        pass


_MISSING = object()


@contextmanager
def _no_web_server():
    """Stand in for ``PromptServer.instance`` while the nodes load without a web server.

    Newer core extensions register with the running server as they load (0.30.0's node
    replacements go to ``PromptServer.instance.node_replace_manager``) and fail to import
    without one; they get a throwaway server here, routes included, that nothing serves.
    Removed afterwards, so that code asking for a running server still finds none."""
    import server

    cls = server.PromptServer
    if getattr(cls, "instance", None) is not None:
        yield
        return
    before = cls.__dict__.get("instance", _MISSING)
    from aiohttp import web

    stand_in = SimpleNamespace(routes=web.RouteTableDef(), app=None, client_id=None)
    try:
        from app.node_replace_manager import NodeReplaceManager
        stand_in.node_replace_manager = NodeReplaceManager()
    except ImportError:  # older trees have no node replacements
        pass
    cls.instance = stand_in
    try:
        yield
    finally:
        if before is _MISSING:
            del cls.instance
        else:
            cls.instance = before


@dataclass
class ComfyRuntime:
    root: Path
    base_dir: Path
    version: str
    nodes: object
    execution: object
    import_failed: list

    def node_class(self, name: str):
        return self.nodes.NODE_CLASS_MAPPINGS[name]

    @property
    def package(self):
        """This package as ComfyUI imported it from custom_nodes/."""
        for mod in list(sys.modules.values()):
            f = getattr(mod, "__file__", None) or ""
            if f.endswith(f"{PACKAGE_DIR_NAME}/__init__.py"):
                return mod
        raise RuntimeError(f"{PACKAGE_DIR_NAME} is not loaded in this ComfyUI")

    def core(self, module: str):
        """A ``twostage_i2v`` module from the copy ComfyUI loaded, so that its
        classes are the ones the nodes use (tests that import ``twostage_i2v``
        directly get a second copy with distinct classes)."""
        import importlib

        return importlib.import_module(f"{self.package.__name__}.twostage_i2v.{module}")

    def validate(self, prompt: dict):
        ok, error, outputs, node_errors = asyncio.run(
            self.execution.validate_prompt(str(uuid.uuid4()), prompt, None)
        )
        return ok, error, outputs, node_errors

    def new_executor(self):
        """A prompt executor; one kept across prompts keeps the outputs of unchanged nodes
        (loaded models) cached, as the server does between queued prompts."""
        return self.execution.PromptExecutor(
            _SilentServer(),
            cache_type=self.execution.CacheType.CLASSIC,
            # 0.30.0 reads ram_inactive; 0.3.75 ignores it.
            cache_args={"lru": 0, "ram": 0, "ram_inactive": 0},
        )

    def run_prompt(self, prompt: dict, extra_data: dict | None = None, check: bool = True,
                   executor=None) -> RunResult:
        ok, error, outputs, node_errors = self.validate(prompt)
        if not ok:
            raise PromptFailed(f"prompt did not validate: {error} {node_errors}", (error, node_errors))
        executor = executor or self.new_executor()
        server = executor.server
        server.messages = []
        prompt_id = str(uuid.uuid4())
        executor.execute(prompt, prompt_id, extra_data or {}, outputs)
        history = getattr(executor, "history_result", None) or {}
        # The executor keeps every event; the server only gets those meant for a client or all.
        messages = list(getattr(executor, "status_messages", None) or server.messages)
        result = RunResult(prompt_id, bool(executor.success), history.get("outputs", {}), messages)
        if check and not result.success:
            err = result.error() or {}
            raise PromptFailed(
                f"prompt failed in node {err.get('node_type')}: {err.get('exception_type')}: "
                f"{err.get('exception_message')}",
                err,
            )
        return result


_RUNTIME: ComfyRuntime | None = None


def boot(base_dir: Path, tree: str | None = None, extra_args: dict | None = None,
         output_dir: Path | None = None) -> ComfyRuntime:
    """Import ComfyUI from its tree with this package in ``base_dir/custom_nodes``.

    Once per process: a second call with the same base dir returns the first
    runtime, another base dir raises.
    """
    global _RUNTIME
    base_dir = Path(base_dir).resolve()
    if _RUNTIME is not None:
        if _RUNTIME.base_dir != base_dir:
            raise RuntimeError(f"ComfyUI is already running in this process with base dir {_RUNTIME.base_dir}")
        return _RUNTIME
    root = comfyui_root(tree)
    prepare_base_dir(base_dir)

    # The order below is ComfyUI's own start-up order, compressed.
    sys.path.insert(0, str(root))
    import comfy.options

    comfy.options.enable_args_parsing(False)  # keep the caller's argv away from ComfyUI
    from comfy.cli_args import args

    args.cpu = True
    # fp16 matmuls are far slower than fp32 on CPUs, and fp32 makes comparisons exact.
    args.fp32_text_enc = True
    args.base_directory = str(base_dir)
    for key, value in (extra_args or {}).items():
        setattr(args, key, value)

    import utils.extra_config  # noqa: F401  (before nodes: nodes.py shadows the top-level utils)
    import folder_paths

    folder_paths.set_output_directory(str(output_dir or base_dir / "output"))
    folder_paths.set_input_directory(str(base_dir / "input"))
    folder_paths.set_temp_directory(str(base_dir / "temp"))
    if hasattr(folder_paths, "set_user_directory"):
        folder_paths.set_user_directory(str(base_dir / "user"))

    import execution
    import nodes

    logging.getLogger().setLevel(logging.INFO)
    with _no_web_server():
        import_failed = asyncio.run(nodes.init_extra_nodes(init_custom_nodes=True, init_api_nodes=False))
    _RUNTIME = ComfyRuntime(root, base_dir, comfyui_version(root), nodes, execution, list(import_failed or []))
    return _RUNTIME
