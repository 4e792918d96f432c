"""Every shipped workflow against ComfyUI itself, not against this package's own checker.

- Each API copy in ``workflows/api/`` passes ComfyUI's own ``execution.validate_prompt`` (the
  check ``POST /prompt`` makes: node types, inputs, value ranges, and the file lists of the loader
  combos), with the small models linked under the file names the workflows ship with.
- Each UI workflow in ``workflows/`` runs end to end on the small models (model names swapped,
  CPU sizes; ``workflow.build.small_variant``) through ComfyUI's executor, and writes its MP4 (that
  PyAV decodes to the frames asked for, carrying the workflow and prompt) and its first-frame PNG.

Both discover the workflows from the folder, so a new workflow is covered (or refused, loudly, when
the small run does not know one of its nodes) without touching this file.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from PIL import Image

from twostage_i2v.headless import demo_graph
from twostage_i2v.headless.api_graphs import decode_video
from twostage_i2v.workflow import media_metadata
from twostage_i2v.workflow.build import MODEL_FILES, BuildError, small_variant

pytestmark = pytest.mark.comfy

WORKFLOWS_DIR = demo_graph.WORKFLOWS_DIR
UI_NAMES = demo_graph.shipped_workflows()
API_COPIES = sorted((WORKFLOWS_DIR / "api").glob("*.json"))
OUTPUT_TYPES = ("SaveVideo", "SaveImage", "PreviewImage")


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def asked_fps(prompt: dict) -> float:
    """The frame rate the workflow's CreateVideo asks for (16 for Wan 2.1 and 2.2 A14B, 24 for the 5B)."""
    (fps,) = [v["inputs"]["fps"] for v in prompt.values() if v["class_type"] == "CreateVideo"]
    return fps


def test_every_ui_workflow_has_an_api_copy():
    assert len(UI_NAMES) >= 4
    assert [p.stem for p in API_COPIES] == UI_NAMES


# -- ComfyUI's own validation ------------------------------------------------------------------

@pytest.fixture(scope="module")
def shipped_names(comfy, comfy_base, tmp_path_factory):
    """The small models under the shipped file names, in an extra model folder that is removed
    afterwards (other tests count on the real files being absent), and the start image in input/."""
    import folder_paths

    root = tmp_path_factory.mktemp("shipped-names")
    links = demo_graph.link_under_shipped_names(root)
    added = sorted({(MODEL_FILES[key].directory, str(link.parent)) for key, link in links.items()})
    for folder, path in added:
        folder_paths.add_model_folder_path(folder, path)
    made = []
    for path in API_COPIES:
        loads = [{"type": "LoadImage", "widgets_values": [n["inputs"]["image"]]}
                 for n in load(path).values() if n["class_type"] == "LoadImage"]
        made += demo_graph.install_inputs(comfy_base, {"nodes": loads})
    folder_paths.filename_list_cache.clear()
    yield links
    for folder, path in added:
        folder_paths.folder_names_and_paths[folder][0].remove(path)
    for path in made:
        path.unlink(missing_ok=True)
    folder_paths.filename_list_cache.clear()


@pytest.mark.parametrize("path", API_COPIES, ids=lambda p: p.stem)
def test_comfyui_validates_the_api_copy(comfy, shipped_names, path):
    prompt = load(path)
    ok, error, outputs, node_errors = comfy.validate(prompt)
    assert ok is True and error is None and node_errors == {}, (error, node_errors)
    assert sorted(outputs) == sorted(k for k, v in prompt.items() if v["class_type"] in OUTPUT_TYPES)

    # The check is real: a model file that is not there fails it, naming the node (a core loader:
    # 0.3.75 leaves the choices of V3 nodes such as this package's loaders to the node itself).
    (loader,) = [k for k, v in prompt.items() if v["class_type"] == "VAELoader"]
    broken = copy.deepcopy(prompt)
    broken[loader]["inputs"]["vae_name"] = "wan_2.2_vae.safetensors"
    ok, error, outputs, node_errors = comfy.validate(broken)
    assert loader in node_errors and "wan_2.2_vae.safetensors" in json.dumps(node_errors)
    saves = {k for k, v in prompt.items() if v["class_type"] in ("SaveVideo", "SaveImage")}
    assert not saves & set(outputs)  # what needs the video model is refused (a stage-1 preview may still run)


# -- end to end on the small models ------------------------------------------------------------

def test_small_run_refuses_what_it_cannot_shrink(object_info):
    wf = load(WORKFLOWS_DIR / f"{demo_graph.WORKFLOW}.json")
    names = {key: f"{key}.tiny" for key in demo_graph.STAND_INS}
    unknown = copy.deepcopy(wf)
    next(n for n in unknown["nodes"] if n["type"] == "KSampler")["type"] = "SamplerCustomAdvanced"
    with pytest.raises(BuildError, match=r"wf\.json: cannot run small: node type\(s\) \['SamplerCustomAdvanced'\]"):
        small_variant(unknown, object_info, names, name="wf.json")
    with pytest.raises(BuildError, match=r"\(VAELoader\) loads 'wan_2\.1_vae\.safetensors' and the small run has no stand-in"):
        small_variant(wf, object_info, {k: v for k, v in names.items() if k != "vae"}, name="wf.json")
    active_lora = copy.deepcopy(wf)
    next(n for n in active_lora["nodes"] if n["type"] == "LoraLoader")["mode"] = 0
    with pytest.raises(BuildError, match=r"\(LoraLoader\) loads .* and the small run has no stand-in"):
        small_variant(active_lora, object_info, names, name="wf.json")


@pytest.mark.slow
@pytest.mark.parametrize("name", UI_NAMES)
def test_shipped_workflow_runs_end_to_end_on_the_small_models(comfy_base, small_workflow_run, name):
    done = small_workflow_run(name)
    run, ui, prompt, result = done.run, done.ui, done.prompt, done.result
    files = demo_graph.saved_files(result.outputs, Path(comfy_base) / "output")
    mp4s = [f for f in files if f.suffix == ".mp4"]
    pngs = [f for f in files if f.suffix == ".png" and "first_frame" in f.name]
    assert len(mp4s) == 1 and len(pngs) == 1, files
    assert mp4s[0].name.startswith(f"{name}_") and pngs[0].name.startswith(f"{name}_first_frame")

    frames, fps, width, height, tags = decode_video(mp4s[0])  # FFmpeg decodes every frame
    assert (frames, fps, width, height) == (run.frames, asked_fps(prompt), *run.video)
    assert json.loads(tags["workflow"]) == ui and json.loads(tags["prompt"]) == prompt
    assert media_metadata.embedded(pngs[0]) == {"container": "png", "workflow": ui, "prompt": prompt}
    with Image.open(pngs[0]) as first:
        assert first.size == run.video
    # Stage 1, where there is one, ran at the still size the small run asked for.
    previews = [k for k, v in prompt.items() if v["class_type"] == "PreviewImage"]
    for node in previews:
        item = result.outputs[node]["images"][0]
        with Image.open(Path(comfy_base) / item["type"] / item.get("subfolder", "") / item["filename"]) as still:
            assert still.size == run.still
    assert previews or any(v["class_type"] == "LoadImage" for v in prompt.values())
