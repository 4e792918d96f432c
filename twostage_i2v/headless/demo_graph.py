"""Workflow 1 on the built-in small random models: what ``demo`` and the end-to-end
tests run.

Two changes to the shipped workflow, both made on the UI workflow (so the
workflow embedded in the video reproduces the run exactly) before the project's
converter turns it into an API prompt:
- model file names swapped for the small models;
- CPU sizes (``workflow.build.SmallRun``): a 128x128 still, a 64x64 clip of 9
  frames, 2 steps per sampler. The shipped 832x480, 81-frame, 40-step settings
  take hours on a CPU.
Needs ComfyUI imported (see headless.inprocess).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..tiny import models as tiny_models
from ..workflow.build import SmallRun, small_variant
from ..workflow.convert import ui_to_api

WORKFLOW = "two_stage_i2v_480p"
TINY_KEYS = ("sdxl", "wan_i2v_q4_k_m", "wan_vae", "clip_vision_h", "umt5_q8_0")


def workflow_path(name: str = WORKFLOW) -> Path:
    return Path(__file__).resolve().parents[2] / "workflows" / f"{name}.json"


def models_to_build() -> list[str]:
    """The demo's model files not yet in the cache."""
    cache = tiny_models.cache_dir()
    names = [tiny_models.MODELS[k].file_name for k in TINY_KEYS]
    return [n for n in names if not (cache / n).is_file()]


def install_models(base_dir: Path) -> dict[str, str]:
    """Build (once per machine) and link the small models; return workflow model key -> file name."""
    models = tiny_models.install_into(base_dir, TINY_KEYS)
    return {
        "sdxl": models["sdxl"].name,
        "wan_480p": models["wan_i2v_q4_k_m"].name,
        "umt5": models["umt5_q8_0"].name,
        "clip_vision": models["clip_vision_h"].name,
        "vae": models["wan_vae"].name,
    }


def small_workflow(object_info: dict, names: dict[str, str], run: SmallRun = SmallRun(),
                   name: str = WORKFLOW) -> tuple[dict, dict]:
    """(UI workflow, API prompt) of the shipped workflow with small models and CPU sizes."""
    ui = json.loads(workflow_path(name).read_text(encoding="utf-8"))
    small = small_ui(ui, object_info, names, run)
    return small, ui_to_api(small, object_info)


def small_ui(ui: dict, object_info: dict, names: dict[str, str], run: SmallRun = SmallRun()) -> dict:
    """Any UI workflow (a shipped one or the user's) with the small models and CPU sizes, as
    ``demo`` and ``batch --small-models`` run it."""
    return small_variant(ui, object_info, names, run)


def saved_files(outputs: dict, output_dir: Path) -> list[Path]:
    """Every file the prompt's output nodes reported, in the output folder."""
    files = []
    for node_out in outputs.values():
        for items in node_out.values():
            for item in items if isinstance(items, list) else []:
                if isinstance(item, dict) and "filename" in item and item.get("type", "output") == "output":
                    files.append(Path(output_dir) / item.get("subfolder", "") / item["filename"])
    return files
