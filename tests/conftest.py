"""Test harness: one in-process ComfyUI per test session, on the tree chosen by
``TWOSTAGE_COMFYUI_TREE`` (0.30.0 default, 0.3.75) or a user's ``COMFYUI_PATH``.

ComfyUI can be imported once per process, so a run covers one tree; the
Makefile runs the suite once per tree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from twostage_i2v.headless import inprocess

ARTIFACTS = Path(os.environ.get("TWOSTAGE_TEST_ARTIFACTS", inprocess.REPO_ROOT / "test-artifacts"))


@pytest.fixture(scope="session")
def comfy_base(tmp_path_factory) -> Path:
    """The ComfyUI base directory (models/, input/, output/, custom_nodes/ with this package)."""
    return inprocess.prepare_base_dir(tmp_path_factory.mktemp("comfy-base"))


@pytest.fixture(scope="session")
def tiny_models(comfy_base, comfy):
    """The small random-weight models, built once per machine and linked into the base dir."""
    from twostage_i2v.tiny import models as tiny_models

    return tiny_models.install_into(comfy_base)


@pytest.fixture(scope="session")
def comfy(comfy_base):
    """ComfyUI imported in-process with this package loaded from custom_nodes/."""
    runtime = inprocess.boot(comfy_base)
    assert not [m for m in runtime.import_failed if inprocess.PACKAGE_DIR_NAME in str(m)], runtime.import_failed
    return runtime


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def server(comfy, comfy_base, tiny_models, artifacts):
    """The real ComfyUI server (main.py) of the same tree and base dir, shared by the session."""
    from harness.server import ComfyServer

    log = artifacts / f"server-{comfy.version}.log"
    with ComfyServer(comfy.root, comfy_base, log) as srv:
        yield srv


@dataclass
class Workflow1Run:
    """Shipped workflow 1, small models and CPU sizes, run once on the shared server."""

    mp4: Path  # the video SaveVideo wrote (workflow and prompt in its metadata)
    png: Path  # the first-frame PNG (the fallback that carries the workflow too)
    workflow: dict  # the UI workflow submitted (extra_pnginfo)
    prompt: dict  # the API prompt submitted
    outputs: dict  # the history entry's outputs
    run: object  # workflow_build.SmallRun: the sizes used


@pytest.fixture(scope="session")
def workflow1_run(server, comfy_base, tiny_models) -> Workflow1Run:
    """Workflow 1 through the real server (both stages): the slow run, once per session."""
    from twostage_i2v.headless import demo_graph
    from twostage_i2v.workflow.build import SmallRun
    from twostage_i2v.headless.object_info import object_info_from_server

    names = demo_graph.install_models(comfy_base)
    run = SmallRun()
    ui, prompt = demo_graph.small_workflow(object_info_from_server(server.url), names, run)
    entry = server.client.run(prompt, workflow=ui, timeout=1800)
    files = demo_graph.saved_files(entry["outputs"], Path(comfy_base) / "output")
    mp4s = [f for f in files if f.suffix == ".mp4"]
    pngs = [f for f in files if f.suffix == ".png" and "first_frame" in f.name]
    assert len(mp4s) == 1 and len(pngs) == 1, f"expected one MP4 and one first-frame PNG, got {files}"
    return Workflow1Run(mp4s[0], pngs[0], ui, prompt, entry["outputs"], run)


@pytest.fixture(scope="session")
def object_info(comfy) -> dict:
    """What the in-process ComfyUI's ``/object_info`` would answer."""
    from twostage_i2v.headless.object_info import object_info_in_process

    return object_info_in_process(comfy.nodes)


@dataclass
class SmallWorkflowRun:
    """A shipped workflow run in-process on the small models (``demo_graph.small_run_for`` sizes)."""

    name: str
    names: dict  # MODEL_FILES key -> small model file name
    run: object  # workflow.build.SmallRun
    ui: dict
    prompt: dict
    result: object  # inprocess.RunResult


@pytest.fixture(scope="session")
def small_workflow_run(comfy, comfy_base, object_info):
    """``small_workflow_run(name)``: run shipped workflow ``name`` small once per session; later calls
    get the same run (each run takes a minute or more on two cores)."""
    from twostage_i2v.headless import demo_graph

    done: dict[str, SmallWorkflowRun] = {}

    def run(name: str) -> SmallWorkflowRun:
        if name not in done:
            names = demo_graph.install_models(comfy_base, name)
            ui_file = demo_graph.load_workflow(name)
            demo_graph.install_inputs(comfy_base, ui_file)
            size = demo_graph.small_run_for(name)
            ui, prompt = demo_graph.small_workflow(object_info, names, size, name=name)
            result = comfy.run_prompt(prompt, extra_data={"extra_pnginfo": {"workflow": ui}})
            done[name] = SmallWorkflowRun(name, names, size, ui, prompt, result)
            # Eight workflows' models (full-size CLIPs and VAEs among them) would otherwise stay
            # loaded together in this one process.
            import gc

            import comfy.model_management as mm  # not "import comfy...": that would rebind the fixture's name

            mm.unload_all_models()
            gc.collect()
        return done[name]

    return run
