"""Registry hygiene: what ``comfy node validate`` (comfy-cli) checks before a publish, and
the project's own rules of the same kind.

comfy-cli 1.23.0 (``comfy_cli/command/custom_nodes/command.py``,
``validate_node_for_publishing``, and ``registry/config_parser.py``,
``extract_node_configuration``) parses ``pyproject.toml`` (warning on a badly
formed license, OS or accelerator classifier, ``requires-comfyui`` or frontend
version, failing on an empty version), then runs ``ruff check . --select
S102,S307,E702`` (exec, eval, statements joined by ``;``) and prints what it finds
as warnings. The offline test repeats each check, with ruff (pinned in
requirements/test-lock.txt) as the oracle for the code rules, plus E701 and E703;
when comfy-cli itself is installed, the other test runs it.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from twostage_i2v.headless import inprocess

pytestmark = pytest.mark.core

REPO = inprocess.REPO_ROOT
RUFF_RULES = "S102,S307,E701,E702,E703"
# comfy-cli's patterns and lists (registry/config_parser.py).
VERSION_PART = re.compile(r"^(?:(==|>=|<=|!=|~=|>|<|<>|=)\s*)?(\d+\.\d+\.\d+(?:-[a-zA-Z0-9]+)?)?$")
OS_PREFIXES = ("Microsoft", "POSIX", "MacOS", "OS Independent")
ACCELERATORS = {"GPU :: NVIDIA CUDA", "GPU :: AMD ROCm", "GPU :: Intel Arc", "NPU :: Huawei Ascend", "GPU :: Apple Metal"}


def tracked_python_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "*.py"],
                         cwd=REPO, capture_output=True, check=True).stdout.decode()
    return [REPO / p for p in out.split("\0") if p and (REPO / p).is_file()]


def ruff(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruff", "check", "-q", "--no-cache", "--isolated",
                           "--output-format", "concise", "--select", RUFF_RULES, *args],
                          cwd=cwd, capture_output=True, text=True, timeout=120)


def test_ruff_finds_no_exec_eval_or_joined_statements():
    done = ruff(".")
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def test_ruff_would_catch_each_rule(tmp_path):
    # The oracle sees what it is asked to see (a rule name that no longer exists would select nothing).
    (tmp_path / "bad.py").write_text(
        "import os\nx = 1; y = 2\nz = 3;\nif x: y = 4\nexec('y = 5')\neval('1 + 1')\n", encoding="utf-8")
    found = set(re.findall(r": (S102|S307|E701|E702|E703) ", ruff(".", cwd=tmp_path).stdout))
    assert found == set(RUFF_RULES.split(","))


def test_no_exec_or_eval_name_in_any_python_file():
    files = tracked_python_files()
    assert len(files) > 50
    uses = []
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id in ("exec", "eval"):
                uses.append(f"{path.relative_to(REPO)}:{node.lineno} {node.id}")
            elif isinstance(node, ast.Attribute) and node.attr in ("exec", "eval") and \
                    isinstance(node.value, ast.Name) and node.value.id == "builtins":
                uses.append(f"{path.relative_to(REPO)}:{node.lineno} builtins.{node.attr}")
    assert uses == []


def registry_problems(pyproject: Path) -> list[str]:
    """What comfy-cli's ``node validate`` warns about or fails on in ``pyproject.toml``."""
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return [f"cannot parse {pyproject}: {exc}"]
    problems = []
    project = data.get("project", {})
    if not isinstance(project, dict):
        return ["`project` must be a table"]
    comfy = (data.get("tool") or {}).get("comfy") or {}
    classifiers = project.get("classifiers", [])
    for c in classifiers:
        if c.startswith("Operating System :: ") and not c[len("Operating System :: "):].startswith(OS_PREFIXES):
            problems.append(f"invalid Operating System classifier {c!r}")
        if c.startswith("Environment ::") and c[len("Environment :: "):] not in ACCELERATORS:
            problems.append(f"invalid Environment classifier {c!r}")
    frontend = next((d.removeprefix("comfyui-frontend-package") for d in project.get("dependencies", [])
                     if isinstance(d, str) and d.startswith("comfyui-frontend-package")), "")
    for field, value in (("requires-comfyui", comfy.get("requires-comfyui", "")), ("comfyui-frontend-package", frontend)):
        if value and not all(VERSION_PART.match(part.strip()) for part in value.split(",")):
            problems.append(f"invalid {field} version {value!r}")
    lic = project.get("license", {})
    if not (isinstance(lic, str) or (isinstance(lic, dict) and ("file" in lic or "text" in lic))):
        problems.append("license must be {file = ...} or {text = ...}")
    version = project.get("version", "")
    if not isinstance(version, str) or not version.strip():
        problems.append("project.version must be a non-empty string")
    for m in comfy.get("Models", []):
        if not (isinstance(m, dict) and "location" in m and "model_url" in m):
            problems.append(f"[tool.comfy] Models entry {m!r} needs location and model_url")
    for key in ("PublisherId", "DisplayName"):
        if not comfy.get(key):
            problems.append(f"[tool.comfy] {key} is empty")
    return problems


def test_pyproject_passes_the_registry_checks():
    assert registry_problems(REPO / "pyproject.toml") == []


def test_registry_checks_catch_what_comfy_cli_warns_about(tmp_path):
    bad = tmp_path / "pyproject.toml"
    bad.write_text('[project]\nname = "x"\nversion = ""\nlicense = {url = "x"}\n'
                   'classifiers = ["Operating System :: Linux", "Environment :: GPU :: CUDA"]\n'
                   'dependencies = ["comfyui-frontend-package>=1.2"]\n'
                   '[tool.comfy]\nrequires-comfyui = "latest"\nPublisherId = "p"\nDisplayName = "d"\n', encoding="utf-8")
    assert len(registry_problems(bad)) == 6, registry_problems(bad)


def comfy_cli() -> str | None:
    return os.environ.get("TWOSTAGE_COMFY_CLI") or shutil.which("comfy")


@pytest.mark.skipif(comfy_cli() is None, reason="comfy-cli is not installed (set TWOSTAGE_COMFY_CLI=/path/to/comfy); "
                    "the offline tests above repeat its checks")
def test_comfy_node_validate_is_clean():
    env = dict(os.environ, COMFY_CLI_SKIP_TRACKING="1")
    done = subprocess.run([comfy_cli(), "--skip-prompt", "--no-enable-telemetry", "node", "validate"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "All validation checks passed successfully" in out
    assert "warning" not in out.lower() and "error" not in out.lower(), out


def test_comfyui_version_is_read_without_running_the_file(tmp_path):
    for tree, root in inprocess.BUNDLED_TREES.items():
        if (root / "comfyui_version.py").is_file():
            assert inprocess.comfyui_version(root) == tree
    (tmp_path / "comfyui_version.py").write_text(
        "import sys\nsys.exit('ran')\n__version__: str = '9.9.9'\n", encoding="utf-8")
    assert inprocess.comfyui_version(tmp_path) == "9.9.9"
    (tmp_path / "comfyui_version.py").write_text("__version__ = (", encoding="utf-8")
    assert inprocess.comfyui_version(tmp_path) == "unknown"
    assert inprocess.comfyui_version(tmp_path / "missing") == "unknown"
