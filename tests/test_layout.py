"""The layout is the architecture: the core (every folder of ``twostage_i2v/`` except the
ComfyUI glue ``comfy/``, the headless driver ``headless/``, the small models ``tiny/``
and the command line) never imports ComfyUI or those folders, not even inside a function.

Two independent checks: each core module is imported by a plain Python in which no
ComfyUI tree is on the path (and ComfyUI's pip-installed parts are blocked), and the
import statements of every core module are read with ``ast``. Both are shown to fail on a
copy of the package with one bad import planted in it.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from twostage_i2v.headless import inprocess

pytestmark = pytest.mark.core

PACKAGE = "twostage_i2v"
PACKAGE_DIR = inprocess.REPO_ROOT / PACKAGE
# The edge: ComfyUI glue, the headless driver, the small models, the command line.
EDGE_PACKAGES = ("comfy", "headless", "tiny", "commands")
EDGE_MODULES = ("cli", "__main__")
EXPECTED_CORE = {"gguf", "models", "bridge", "prompt", "workflow"}
# ComfyUI's top-level modules and the packages it installs for itself. The trees on this
# machine add whatever a newer ComfyUI grows (see comfyui_top_level_names).
COMFYUI_MODULES = {
    "comfy", "comfy_api", "comfy_api_nodes", "comfy_extras", "comfy_execution", "comfy_config", "folder_paths",
    "nodes", "execution", "server", "comfy_kitchen", "comfy_aimdo", "latent_preview", "node_helpers", "app",
    "utils", "main", "cuda_malloc", "comfyui_version", "protocol", "new_updater", "hook_breaker_ac10a0",
    "middleware", "api_server", "alembic_db", "blueprints", "comfyui_manager", "cm_cli",
}
# Installed by pip, so findable in any environment that runs ComfyUI: blocked, not absent.
COMFYUI_PIP_PACKAGES = {"comfy_kitchen", "comfy_aimdo", "comfyui_manager", "cm_cli"}
TREE_FOLDERS_NOT_MODULES = {"tests", "tests-unit", "custom_nodes", "script_examples", "input", "output", "models",
                            "user", "temp", "web", "docs"}


def comfyui_top_level_names() -> set[str]:
    """COMFYUI_MODULES plus every top-level module or package of the ComfyUI trees found here."""
    names = set(COMFYUI_MODULES)
    for root in inprocess.BUNDLED_TREES.values():
        if not root.is_dir():
            continue
        for entry in root.iterdir():
            if entry.suffix == ".py":
                names.add(entry.stem)
            elif entry.is_dir() and entry.name not in TREE_FOLDERS_NOT_MODULES and any(entry.glob("*.py")):
                names.add(entry.name)
    return names


def glue_prefixes(package: str = PACKAGE) -> tuple[str, ...]:
    return tuple(f"{package}.{name}" for name in (*EDGE_PACKAGES, *EDGE_MODULES))


def core_packages(package_dir: Path) -> list[str]:
    return sorted(p.name for p in package_dir.iterdir()
                  if (p / "__init__.py").is_file() and p.name not in EDGE_PACKAGES)


def core_modules(package_dir: Path, package: str = PACKAGE) -> dict[str, Path]:
    """Dotted name -> file of the package's ``__init__`` and every module of the core packages."""
    out = {package: package_dir / "__init__.py"}
    for sub in core_packages(package_dir):
        for path in sorted((package_dir / sub).rglob("*.py")):
            rel = path.relative_to(package_dir).with_suffix("")
            parts = [package, *rel.parts]
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


# -- the import check (ast) -----------------------------------------------------------

def _imported_names(tree: ast.AST, module: str, is_package: bool):
    """(line, dotted name) of everything the module imports, wherever the statement sits."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                if node.level - 1 >= len(parts):
                    yield node.lineno, "." * node.level + (node.module or "")  # reaches outside the package
                    continue
                base = ".".join(parts[:len(parts) - (node.level - 1)])
            else:
                base = ""
            target = ".".join(p for p in (base, node.module) if p)
            yield node.lineno, target
            if node.module is None:  # "from .. import comfy": each name may be a module
                for alias in node.names:
                    yield node.lineno, f"{target}.{alias.name}"
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in ("import_module", "__import__"):
                yield node.lineno, node.args[0].value


def forbidden_imports(package_dir: Path, package: str = PACKAGE) -> list[str]:
    comfy_names = comfyui_top_level_names()
    glue = glue_prefixes(package)
    problems = []
    for module, path in core_modules(package_dir, package).items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for line, name in _imported_names(tree, module, path.name == "__init__.py"):
            where = f"{path.relative_to(package_dir.parent)}:{line}"
            if name.startswith("."):
                problems.append(f"{where} imports {name}, outside the {package} package")
            elif name.split(".")[0] in comfy_names:
                problems.append(f"{where} imports ComfyUI ({name})")
            elif any(name == g or name.startswith(g + ".") for g in glue):
                problems.append(f"{where} imports the edge ({name})")
    return problems


def test_core_folders_exist_and_say_what_they_are():
    assert set(core_packages(PACKAGE_DIR)) >= EXPECTED_CORE
    subpackages = [p for p in PACKAGE_DIR.iterdir() if (p / "__init__.py").is_file()]
    assert {p.name for p in subpackages} >= EXPECTED_CORE | set(EDGE_PACKAGES)
    for sub in [PACKAGE_DIR, *subpackages]:
        doc = ast.get_docstring(ast.parse((sub / "__init__.py").read_text(encoding="utf-8")))
        assert doc and len(doc.split()) >= 4, f"{sub / '__init__.py'} has no docstring saying what the folder is for"
    root_modules = sorted(p.name for p in PACKAGE_DIR.glob("*.py"))
    assert len(root_modules) <= 4, root_modules


def test_no_core_module_imports_comfyui_or_the_edge():
    modules = core_modules(PACKAGE_DIR)
    assert len(modules) >= 25 and all(f"{PACKAGE}.{p}" in modules for p in EXPECTED_CORE)
    assert forbidden_imports(PACKAGE_DIR) == []


def copy_package(tmp_path: Path) -> Path:
    dst = tmp_path / PACKAGE
    shutil.copytree(PACKAGE_DIR, dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


PLANTS = {
    "function-level ComfyUI": ("workflow/convert.py", "def _planted():\n    import folder_paths\n    return folder_paths\n",
                               "workflow/convert.py:{line} imports ComfyUI (folder_paths)"),
    "module-level comfy": ("gguf/dequant.py", "from comfy import model_management\n",
                           "gguf/dequant.py:{line} imports ComfyUI (comfy)"),
    "relative glue": ("models/kind.py", "def _planted():\n    from ..headless import inprocess\n",
                      "models/kind.py:{line} imports the edge (twostage_i2v.headless)"),
    "relative name": ("bridge/geometry.py", "def _planted():\n    from .. import tiny\n",
                      "bridge/geometry.py:{line} imports the edge (twostage_i2v.tiny)"),
    "absolute glue": ("prompt/lint.py", "import twostage_i2v.comfy.features\n",
                      "prompt/lint.py:{line} imports the edge (twostage_i2v.comfy.features)"),
    "pip part": ("workflow/validate.py", "def _planted():\n    import comfy_kitchen.tensor\n",
                 "workflow/validate.py:{line} imports ComfyUI (comfy_kitchen.tensor)"),
    "import_module": ("workflow/build.py", "def _planted(importlib):\n    return importlib.import_module('nodes')\n",
                      "workflow/build.py:{line} imports ComfyUI (nodes)"),
    "outside the package": ("__init__.py", "def _planted():\n    from ..nodes import all_nodes\n",
                            "__init__.py:{line} imports ..nodes, outside the twostage_i2v package"),
}


def plant(package_dir: Path, rel: str, code: str) -> int:
    """Append ``code`` to a module of the copy; the line number of its import statement."""
    path = package_dir / rel
    text = path.read_text(encoding="utf-8")
    path.write_text(text + "\n\n" + code, encoding="utf-8")
    first = len(text.splitlines()) + 3
    return first + (1 if code.startswith("def ") else 0)


@pytest.mark.parametrize("case", sorted(PLANTS))
def test_import_check_catches_a_planted_import(tmp_path, case):
    rel, code, expected = PLANTS[case]
    copy = copy_package(tmp_path)
    assert forbidden_imports(copy) == []
    line = plant(copy, rel, code)
    assert forbidden_imports(copy) == [f"{PACKAGE}/" + expected.format(line=line)]


# -- the import test (a Python without ComfyUI) ----------------------------------------

_IMPORT_ALL = r"""
import importlib, importlib.abc, importlib.util, json, sys
root, modules, comfy_names, glue = sys.argv[1], json.loads(sys.argv[2]), set(json.loads(sys.argv[3])), json.loads(sys.argv[4])
sys.path.insert(0, root)
findable = sorted(n for n in comfy_names if importlib.util.find_spec(n) is not None)

class NoComfyUI(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in comfy_names or any(fullname == g or fullname.startswith(g + ".") for g in glue):
            raise ImportError(f"a core module imported {fullname}")
        return None

sys.meta_path.insert(0, NoComfyUI())
failed = {}
for name in modules:
    try:
        importlib.import_module(name)
    except BaseException as exc:
        failed[name] = f"{type(exc).__name__}: {exc}"
loaded = sorted(m for m in sys.modules if m.split(".")[0] in comfy_names)
print(json.dumps({"findable": findable, "failed": failed, "loaded": loaded, "path": sys.path}))
"""


def import_all(package_parent: Path, modules: list[str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("COMFYUI_PATH", "PYTHONPATH", "PYTHONSTARTUP")}
    done = subprocess.run(
        [sys.executable, "-I", "-c", _IMPORT_ALL, str(package_parent), json.dumps(modules),
         json.dumps(sorted(comfyui_top_level_names())), json.dumps(list(glue_prefixes()))],
        cwd=package_parent, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_core_module_imports_without_comfyui(tmp_path):
    # The package alone on the path: not the checkout (whose nodes/ would be importable), no ComfyUI tree.
    (tmp_path / PACKAGE).symlink_to(PACKAGE_DIR, target_is_directory=True)
    modules = sorted(core_modules(PACKAGE_DIR))
    result = import_all(tmp_path, modules)
    trees = [str(t) for t in inprocess.BUNDLED_TREES.values()]
    assert not [p for p in result["path"] if any(p.startswith(t) for t in trees)], result["path"]
    # Nothing of ComfyUI can be found there but its pip-installed parts, which the finder blocks.
    assert set(result["findable"]) <= COMFYUI_PIP_PACKAGES, result["findable"]
    assert {"comfy", "folder_paths", "nodes", "comfy_api", "execution", "server"}.isdisjoint(result["findable"])
    assert result["failed"] == {}
    assert result["loaded"] == []


@pytest.mark.parametrize("rel,code,culprit", [
    ("workflow/media_metadata.py", "import folder_paths\n", "folder_paths"),
    ("models/summary.py", "from ..tiny import models as _tiny\n", "twostage_i2v.tiny"),
    ("gguf/reader.py", "import comfy_kitchen\n", "comfy_kitchen"),
])
def test_import_test_catches_a_planted_import(tmp_path, rel, code, culprit):
    copy = copy_package(tmp_path)
    plant(copy, rel, code)
    module = f"{PACKAGE}." + rel[:-3].replace("/", ".")
    result = import_all(tmp_path, sorted(core_modules(copy)))
    assert module in result["failed"] and culprit in result["failed"][module], result["failed"]
