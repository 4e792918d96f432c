"""The shipped workflows on the built-in small random models: what ``demo`` (workflow 1) and
the end-to-end tests (every workflow in ``workflows/``) run.

Two changes to a shipped workflow, both made on the UI workflow (so the
workflow embedded in the video reproduces the run exactly) before the project's
converter turns it into an API prompt:
- model file names swapped for the small models;
- CPU sizes (``workflow.build.SmallRun``): a 128x128 still, a 64x64 clip of 9
  frames, 2 steps per sampler. The shipped 832x480, 81-frame, 40-step settings
  take hours on a CPU.
``workflow.build.small_variant`` makes both changes and refuses a workflow it cannot
shrink. Needs ComfyUI imported (see headless.inprocess).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..tiny import models as tiny_models
from ..workflow.build import MODEL_FILES, START_IMAGE, SmallRun, small_variant
from ..workflow.convert import ui_to_api

WORKFLOW = "two_stage_i2v_480p"
WORKFLOWS_DIR = Path(__file__).resolve().parents[2] / "workflows"
TI2V_WORKFLOWS = ("two_stage_wan22_ti2v_5b_720p",)
TINY_KEYS = ("sdxl", "wan_i2v_q4_k_m", "wan_vae", "clip_vision_h", "umt5_q8_0")
# Each workflow model file (workflow.build.MODEL_FILES key) -> the small model that stands in for it.
STAND_INS = {
    "sdxl": "sdxl",
    "wan_480p": "wan_i2v_q4_k_m",
    "wan_720p": "wan_i2v_q4_k_m",
    "umt5": "umt5_q8_0",
    "clip_vision": "clip_vision_h",
    "vae": "wan_vae",
    "wan22_high": "wan22_i2v_high_q4_k_m",
    "wan22_low": "wan22_i2v_low_q4_k_m",
    "wan22_5b": "wan22_ti2v_5b_q4_k_m",
    "vae22": "wan22_vae",
    "lora21_4step": "wan21_lightx2v_lora",
    "lora22_high": "wan22_lightx2v_lora_high",
    "lora22_low": "wan22_lightx2v_lora_low",
}


def workflow_path(name: str = WORKFLOW) -> Path:
    return WORKFLOWS_DIR / f"{name}.json"


def shipped_workflows() -> list[str]:
    """The names of every UI workflow in ``workflows/`` (new files are picked up by themselves)."""
    return sorted(p.stem for p in WORKFLOWS_DIR.glob("*.json"))


def models_to_build() -> list[str]:
    """The demo's model files not yet in the cache."""
    cache = tiny_models.cache_dir()
    names = [tiny_models.MODELS[k].file_name for k in TINY_KEYS]
    return [n for n in names if not (cache / n).is_file()]


def install_models(base_dir: Path, name: str = WORKFLOW) -> dict[str, str]:
    """Build (once per machine) and link the small models workflow ``name`` needs; return workflow model
    key (``MODEL_FILES``) -> file name. Workflow 1's keys are "sdxl", "wan_480p", "umt5", "clip_vision",
    "vae"."""
    keys = workflow_model_keys(name)
    models = tiny_models.install_into(base_dir, sorted({STAND_INS[k] for k in keys}))
    return {k: models[STAND_INS[k]].name for k in keys}


def workflow_model_keys(name: str = WORKFLOW) -> list[str]:
    """The ``MODEL_FILES`` keys whose files the shipped workflow ``name`` lists in its nodes' models."""
    from ..workflow.build import MODEL_FILES

    ui = load_workflow(name)
    files = {m["name"] for n in ui["nodes"] for m in n.get("properties", {}).get("models", [])}
    return [k for k, m in MODEL_FILES.items() if m.name in files]


def link_under_shipped_names(root: Path) -> dict[str, Path]:
    """The small models linked as ``root/<folder>/<shipped file name>``, for a check that needs the files a
    shipped workflow names to exist (ComfyUI's own prompt validation). MODEL_FILES key -> link."""
    out = {}
    for key, tiny in STAND_INS.items():
        shipped = MODEL_FILES[key]
        folder = Path(root) / shipped.directory
        folder.mkdir(parents=True, exist_ok=True)
        out[key] = tiny_models.link_model(tiny_models.build(tiny), folder / shipped.name)
    return out


def install_inputs(base_dir: Path, workflow: dict) -> list[Path]:
    """A start image under each name a LoadImage node of ``workflow`` asks for, in ``input/``; a file already
    there is kept. ComfyUI refuses an input that links outside ``input/``, so these are real files."""
    from .api_graphs import write_start_image

    made = []
    for node in workflow["nodes"]:
        if node["type"] != "LoadImage":
            continue
        name = node["widgets_values"][0] if node.get("widgets_values") else START_IMAGE
        target = Path(base_dir) / "input" / name
        if not target.exists():
            write_start_image(target.parent, name)
            made.append(target)
    return made


def load_workflow(name: str = WORKFLOW) -> dict:
    return json.loads(workflow_path(name).read_text(encoding="utf-8"))


def small_run_for(name: str) -> SmallRun:
    """The CPU sizes for shipped workflow ``name``: the Wan 2.2 VAE (5B) only loads at its real width
    (ComfyUI fixes it), so that clip is kept to 32x32 and 5 frames to keep its decode short."""
    if name in TI2V_WORKFLOWS:
        return SmallRun(video=(32, 32), frames=5)
    return SmallRun()


def small_workflow(object_info: dict, names: dict[str, str], run: SmallRun = SmallRun(),
                   name: str = WORKFLOW) -> tuple[dict, dict]:
    """(UI workflow, API prompt) of the shipped workflow with small models and CPU sizes."""
    ui = load_workflow(name)
    small = small_variant(ui, object_info, names, run, name=f"workflows/{name}.json")
    return small, ui_to_api(small, object_info)


def saved_files(outputs: dict, output_dir: Path) -> list[Path]:
    """Every file the prompt's output nodes reported, in the output folder."""
    files = []
    for node_out in outputs.values():
        for items in node_out.values():
            for item in items if isinstance(items, list) else []:
                if isinstance(item, dict) and "filename" in item and item.get("type", "output") == "output":
                    files.append(Path(output_dir) / item.get("subfolder", "") / item["filename"])
    return files
