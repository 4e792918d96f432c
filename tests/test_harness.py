"""The harness is real: this package loads in the real ComfyUI (in-process and as
the real server) and a tiny Wan 2.1 I2V graph of core nodes writes a video."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from twostage_i2v.headless.api_graphs import decode_video, saved_videos, wan_i2v_prompt, write_start_image
from twostage_i2v.headless import inprocess

REPO = inprocess.REPO_ROOT
OUR_NODES = {
    "TwoStageI2V_WanI2VLoaderGGUF",
    "TwoStageI2V_TextEncoderGGUF",
    "TwoStageI2V_MotionPrompt",
    "TwoStageI2V_StageBridge",
    "TwoStageI2V_StagePlan",
}


@pytest.mark.core
def test_entry_point_imports_without_comfyui():
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('pkg', {str(REPO / '__init__.py')!r}, "
        f"submodule_search_locations=[{str(REPO)!r}])\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['pkg'] = m; spec.loader.exec_module(m)\n"
        "assert m.WEB_DIRECTORY == './web' and 'comfy_entrypoint' not in vars(m)\n"
        "assert importlib.util.find_spec('comfy_api') is None\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.core
def test_cli_help_lists_verbs():
    out = subprocess.run([sys.executable, "-m", "twostage_i2v", "--help"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert "usage: python -m twostage_i2v" in out.stdout


@pytest.mark.core
def test_requirements_match_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    reqs = [
        line.strip() for line in (REPO / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert sorted(reqs) == sorted(project["project"]["dependencies"])
    comfy = project["tool"]["comfy"]
    assert comfy["DisplayName"] == "TwoStage I2V" and comfy["PublisherId"]
    # WEB_DIRECTORY registers web/; a [tool.comfy] web entry would register it twice.
    assert "web" not in comfy


@pytest.mark.comfy
def test_package_nodes_registered_in_process(comfy):
    registered = {k for k in comfy.nodes.NODE_CLASS_MAPPINGS if k.startswith("TwoStageI2V_")}
    assert OUR_NODES <= registered
    assert inprocess.PACKAGE_DIR_NAME in " ".join(comfy.nodes.LOADED_MODULE_DIRS)
    # Every core extension loads without a web server too (0.30.0's node replacements register with
    # PromptServer.instance as they load), and no stand-in server is left behind for code to find.
    assert comfy.import_failed == []
    server = sys.modules.get("server")
    assert getattr(getattr(server, "PromptServer", None), "instance", None) is None


@pytest.mark.comfy
def test_tiny_wan_i2v_core_graph_writes_video(comfy, comfy_base, tiny_models):
    image = write_start_image(comfy_base / "input")
    prompt = wan_i2v_prompt(tiny_models, image, length=9, prefix="harness/core_graph")
    started = time.monotonic()
    result = comfy.run_prompt(prompt)
    elapsed = time.monotonic() - started
    videos = saved_videos(result.outputs, comfy_base / "output")
    assert len(videos) == 1, result.outputs
    frames, fps, width, height, _ = decode_video(videos[0])
    assert (frames, fps, width, height) == (9, 16.0, 64, 64)
    print(f"tiny Wan I2V graph on ComfyUI {comfy.version}: {elapsed:.1f} s")


@pytest.mark.server
def test_server_lists_package_nodes_and_imports_cleanly(server):
    info = server.client.object_info()
    assert OUR_NODES <= set(info), sorted(k for k in info if k.startswith("TwoStageI2V_"))
    loader = info["TwoStageI2V_WanI2VLoaderGGUF"]
    assert loader["display_name"] == "Load Wan I2V Model (GGUF)"
    log = server.log()
    assert f"custom_nodes/{inprocess.PACKAGE_DIR_NAME}" in log
    assert "IMPORT FAILED" not in log.split("Import times for custom nodes")[-1].split("\n\n")[0]
    assert f"Cannot import {Path(server.base_dir) / 'custom_nodes' / inprocess.PACKAGE_DIR_NAME}" not in log


@pytest.mark.server
def test_tiny_wan_i2v_core_graph_over_http(server, comfy_base, tiny_models):
    image = write_start_image(comfy_base / "input")
    prompt = wan_i2v_prompt(tiny_models, image, length=5, seed=11, prefix="harness/http_graph")
    workflow = {"nodes": [], "links": [], "version": 0.4, "extra": {"test": "harness"}}
    entry = server.client.run(prompt, workflow=workflow, timeout=900)
    videos = saved_videos(entry["outputs"], comfy_base / "output")
    assert len(videos) == 1, entry["outputs"]
    frames, fps, width, height, meta = decode_video(videos[0])
    assert (frames, fps, width, height) == (5, 16.0, 64, 64)
    # Core SaveVideo embeds the workflow that came with the request.
    assert json.loads(meta["workflow"]) == workflow
