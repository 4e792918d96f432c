"""The shipped workflows: they validate against the real ComfyUI (in-process and the
real server), the server lists them as templates, the API copies are what the
converter makes of the UI files, and workflow 1 runs end to end on the real
server with the small models, writing an MP4 and a PNG that carry it.

Oracles: ComfyUI's own node definitions (/object_info) and execution, PyAV's
decoding of the video and its reading of the container tags, the graph
structure of the UI files (which node feeds which) for the converter.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import urllib.request
from io import BytesIO
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from twostage_i2v.headless import inprocess, demo_graph
from twostage_i2v.workflow import media_metadata
from twostage_i2v.headless.api_graphs import decode_video
from twostage_i2v.cli import main
from twostage_i2v.workflow.build import (CORE_VER, MODEL_FILES, PACKAGE_CNR_ID, SPEC_BY_NAME, WAN_CFG, WAN_FPS,
                                         WAN_FRAMES, WAN_SHIFT, WAN_STEPS, WORKFLOWS, build_all, dump_json,
                                         find_nodes)
from twostage_i2v.workflow.convert import ui_to_api, widget_layout, widget_values_by_name
from twostage_i2v.workflow.validate import validate

pytestmark = pytest.mark.comfy

WORKFLOWS_DIR = inprocess.REPO_ROOT / "workflows"
NAMES = [s.name for s in WORKFLOWS]
# Issue 7's Wan 2.1 workflows; the Wan 2.2 and 4-step ones are checked in test_wan22_workflows.py.
WAN21_NAMES = [s.name for s in WORKFLOWS if s.model == "wan2.1" and not s.fast]
# The node list for a two-stage workflow; the image-only one has LoadImage instead of stage 1.
STAGE2_TYPES = ["TwoStageI2V_StageBridge", "TwoStageI2V_WanI2VLoaderGGUF", "TwoStageI2V_TextEncoderGGUF",
                "CLIPVisionLoader", "CLIPVisionEncode", "TwoStageI2V_MotionPrompt", "WanImageToVideo",
                "ModelSamplingSD3", "KSampler", "VAEDecode", "CreateVideo", "SaveVideo", "VAELoader",
                "ImageFromBatch", "SaveImage"]
STAGE1_TYPES = ["CheckpointLoaderSimple", "LoraLoader", "CLIPTextEncode", "CLIPTextEncode", "EmptyLatentImage",
                "TwoStageI2V_StagePlan", "KSampler", "VAEDecode", "PreviewImage"]


def load(name: str, api: bool = False) -> dict:
    path = WORKFLOWS_DIR / ("api" if api else "") / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8"))


def widgets(node, object_info):
    return widget_values_by_name(object_info[node["type"]], node["widgets_values"])


def feeds(wf, node, input_name):
    """(origin node, origin slot) of the link into ``node``'s input."""
    lid = next(i["link"] for i in node["inputs"] if i["name"] == input_name)
    link = next(link for link in wf["links"] if link[0] == lid)
    return next(n for n in wf["nodes"] if n["id"] == link[1]), link[2]


def in_group(wf, title, node):
    g = next(g for g in wf["groups"] if g["title"] == title)
    x, y, w, h = g["bounding"]
    nx, ny = node["pos"]
    return x <= nx and nx + node["size"][0] <= x + w and y <= ny - 30 and ny + node["size"][1] <= y + h


# -- the files --------------------------------------------------------------------

def core_layout_differences(object_info) -> dict[str, tuple[int, int]]:
    """Core node types whose widgets this ComfyUI lays out differently from the shipped files:
    type -> (widget values here, widget values in the files)."""
    out = {}
    for name in NAMES:
        for node in load(name)["nodes"]:
            if node["properties"].get("cnr_id") != "comfy-core":
                continue
            here = widget_layout(object_info[node["type"]], node["widgets_values"])
            if len(here) != len(node["widgets_values"]):
                out[node["type"]] = (len(here), len(node["widgets_values"]))
    return out


# The files are laid out by the primary tree's core nodes. The oldest supported tree differs only in
# CreateVideo (no bit_depth widget: the frontend drops the extra value on load); its other core nodes
# lay out other sizes and output slots, so there only this package's nodes are compared.
KNOWN_OLD_TREE_DIFFERENCES = {"CreateVideo": (1, 2)}


def _package_nodes(wf: dict) -> list[tuple]:
    return [(n["id"], n["type"], n["widgets_values"], n["inputs"], n["outputs"])
            for n in wf["nodes"] if n["type"].startswith("TwoStageI2V_")]


def test_files_are_what_the_builder_and_converter_make(object_info):
    differences = core_layout_differences(object_info)
    assert differences in ({}, KNOWN_OLD_TREE_DIFFERENCES), differences
    built = build_all(object_info)
    assert sorted(built) == sorted(p.stem for p in WORKFLOWS_DIR.glob("*.json"))
    for name, wf in built.items():
        if differences:
            ours = _package_nodes(load(name))
            assert len(ours) >= 2 and _package_nodes(json.loads(dump_json(wf))) == ours, name
            continue
        assert (WORKFLOWS_DIR / f"{name}.json").read_text(encoding="utf-8") == dump_json(wf), name
        # The API copy is the converter's output for the UI file on disk.
        assert load(name, api=True) == ui_to_api(load(name), object_info), name
    for name in built:
        with Image.open(WORKFLOWS_DIR / f"{name}.jpg") as thumb:
            assert thumb.format == "JPEG" and thumb.size == (1024, 576)


@pytest.mark.parametrize("name", WAN21_NAMES)
def test_workflow_content(name, object_info):
    spec, wf = SPEC_BY_NAME[name], load(name)
    types = sorted(n["type"] for n in wf["nodes"] if n["type"] not in ("Note", "MarkdownNote"))
    expected = STAGE2_TYPES + (STAGE1_TYPES if spec.stage1 else ["LoadImage"])
    assert types == sorted(expected)
    assert wf["version"] == 0.4 and {"nodes", "links", "groups", "extra"} <= set(wf)
    for node in wf["nodes"]:
        props = node["properties"]
        if node["type"].startswith("TwoStageI2V_"):
            assert props["cnr_id"] == PACKAGE_CNR_ID
        elif node["type"] not in ("Note", "MarkdownNote"):
            assert props["cnr_id"] == "comfy-core" and props["ver"] == CORE_VER
        for m in props.get("models", []):
            assert m["url"].startswith("https://huggingface.co/") and m["url"].endswith("/" + m["name"])
            assert widgets(node, object_info) and m["name"] in widgets(node, object_info).values()
    # Wan 2.1's official I2V defaults.
    (bridge,) = find_nodes(wf, "TwoStageI2V_StageBridge")
    (i2v,) = find_nodes(wf, "WanImageToVideo")
    assert widgets(bridge, object_info)["frames"] == WAN_FRAMES and widgets(bridge, object_info)["fps"] == WAN_FPS
    assert [feeds(wf, i2v, k)[0]["id"] for k in ("width", "height", "length", "start_image")] == [bridge["id"]] * 4
    (ks2,) = [n for n in find_nodes(wf, "KSampler") if feeds(wf, n, "latent_image")[0]["id"] == i2v["id"]]
    assert (widgets(ks2, object_info)["steps"], widgets(ks2, object_info)["cfg"]) == (WAN_STEPS, WAN_CFG)
    assert widgets(find_nodes(wf, "ModelSamplingSD3")[0], object_info)["shift"] == WAN_SHIFT[spec.resolution]
    assert widgets(find_nodes(wf, "CreateVideo")[0], object_info)["fps"] == WAN_FPS
    assert widgets(find_nodes(wf, "SaveVideo")[0], object_info)["format"] == "mp4"
    first = find_nodes(wf, "ImageFromBatch")[0]
    assert widgets(first, object_info) == {"batch_index": 0, "length": 1}
    assert feeds(wf, find_nodes(wf, "SaveImage")[0], "images")[0]["id"] == first["id"]
    # One Note lists every model file of the workflow with its folder.
    files = {(m["directory"], m["name"]) for n in wf["nodes"] for m in n["properties"].get("models", [])}
    notes = [n["widgets_values"][0] for n in wf["nodes"] if n["type"] in ("Note", "MarkdownNote")]
    assert any(all(f"{d}/" in t and n in t for d, n in files) for t in notes)
    wan = MODEL_FILES["wan_720p" if spec.resolution == "720p" else "wan_480p"]
    assert (wan.directory, wan.name) in files
    (dec2,) = [n for n in find_nodes(wf, "VAEDecode") if feeds(wf, n, "samples")[0]["id"] == ks2["id"]]
    stage2 = {ks2["id"], dec2["id"]} | {n["id"] for n in wf["nodes"] if n["type"] in STAGE2_TYPES
                                        and n["type"] not in ("KSampler", "VAEDecode", "TwoStageI2V_StageBridge")}
    for node in wf["nodes"]:
        if node["id"] in stage2:
            assert in_group(wf, "Stage 2: motion", node), node["type"]
        elif spec.stage1 and node["type"] in STAGE1_TYPES:
            assert in_group(wf, "Stage 1: image", node), node["type"]
    if spec.stage1:
        (plan,) = find_nodes(wf, "TwoStageI2V_StagePlan")
        (latent,) = find_nodes(wf, "EmptyLatentImage")
        assert feeds(wf, latent, "width") == (plan, 0) and feeds(wf, latent, "height") == (plan, 1)
        assert widgets(plan, object_info)["target"] == spec.target


@pytest.mark.parametrize("name", NAMES)
def test_validates_in_process(name, object_info, comfy_base, capsys):
    for data in (load(name), load(name, api=True)):
        report = validate(data, object_info)
        assert report.ok, [str(e) for e in report.errors]
        needs = {(f.folder, f.name) for f in report.files if f.required}
        wf = load(name)
        expected = {(m["directory"], m["name"]) for n in wf["nodes"] for m in n["properties"].get("models", [])}
        if not SPEC_BY_NAME[name].stage1:
            expected.add(("input", "start_image.png"))
        assert needs == expected
    assert main(["validate-workflow", str(WORKFLOWS_DIR / f"{name}.json"), "--base-dir", str(comfy_base)]) == 0
    assert "result: valid" in capsys.readouterr().out
    # The real files are not in the test ComfyUI: --strict fails on that.
    assert main(["validate-workflow", str(WORKFLOWS_DIR / f"{name}.json"), "--base-dir", str(comfy_base),
                 "--strict"]) == 1


# -- the validator refuses what ComfyUI would refuse ------------------------------

def errors_of(wf, object_info):
    return [str(e) for e in validate(wf, object_info).errors]


def test_validator_errors(object_info):
    base = load("two_stage_i2v_480p")
    ks2 = next(n for n in base["nodes"] if n.get("title") == "KSampler (Wan I2V)")

    wf = copy.deepcopy(base)
    next(n for n in wf["nodes"] if n["id"] == ks2["id"])["type"] = "NoSuchNode"
    assert f"node {ks2['id']}: unknown node type 'NoSuchNode'" in " ".join(errors_of(wf, object_info))

    def with_ks2_values(values):
        wf = copy.deepcopy(base)
        next(n for n in wf["nodes"] if n["id"] == ks2["id"])["widgets_values"] = values
        return " | ".join(errors_of(wf, object_info))

    seed, control, steps, cfg, sampler, scheduler, denoise = ks2["widgets_values"]
    shifted = with_ks2_values([seed, steps, cfg, sampler, scheduler, denoise])  # the control value lost
    assert "is not one of ['fixed', 'increment', 'decrement', 'randomize']" in shifted
    assert "cfg: 'uni_pc' is not a number" in shifted
    assert "expected 7 widget values, found 6 (no value for 'denoise')" in shifted
    assert "steps: 0 is below the minimum 1" in with_ks2_values([seed, control, 0, cfg, sampler, scheduler, denoise])
    assert "sampler_name: 'nope' is not one of the choices" in with_ks2_values(
        [seed, control, steps, cfg, "nope", scheduler, denoise])
    assert "cfg: 101.0 is above the maximum 100.0" in with_ks2_values(
        [seed, control, steps, 101.0, sampler, scheduler, denoise])

    wf = copy.deepcopy(base)
    wf["links"] = [link for link in wf["links"] if not (link[3] == ks2["id"] and link[4] == 0)]
    assert any("refers to link" in e and "(dangling)" in e for e in errors_of(wf, object_info))

    wf = copy.deepcopy(base)
    (dec,) = [n for n in find_nodes(wf, "VAEDecode") if n.get("title") == "VAE Decode (video)"]
    link = next(link for link in wf["links"] if link[3] == ks2["id"] and link[4] == 0)  # ModelSamplingSD3 -> model
    link[1], link[2] = dec["id"], 0  # now an IMAGE into a MODEL input
    assert any(f"link {link[0]}: VAEDecode output 0 is IMAGE, KSampler input 'model' wants MODEL (mistyped)" in e
               for e in errors_of(wf, object_info))

    wf = copy.deepcopy(base)
    (dec,) = [n for n in find_nodes(wf, "VAEDecode") if n.get("title") == "VAE Decode (video)"]
    lid = dec["inputs"][0]["link"]
    dec["inputs"][0]["link"] = None
    wf["links"] = [link for link in wf["links"] if link[0] != lid]
    for n in wf["nodes"]:
        for out in n["outputs"]:
            if out.get("links") and lid in out["links"]:
                out["links"].remove(lid)
    assert f"node {dec['id']}: VAEDecode: required input 'samples' has no connection" in errors_of(wf, object_info)


def test_unbypassed_lora_becomes_a_need(object_info):
    wf = load("two_stage_i2v_480p")
    (lora,) = find_nodes(wf, "LoraLoader")
    assert lora["mode"] == 4 and widgets(lora, object_info)["lora_name"] == "your_character_lora.safetensors"
    report = validate(wf, object_info)
    assert ("loras", "your_character_lora.safetensors") not in {(f.folder, f.name) for f in report.missing_files}
    lora["mode"] = 0
    report = validate(wf, object_info)
    assert report.ok
    assert ("loras", "your_character_lora.safetensors") in {(f.folder, f.name) for f in report.missing_files}


def test_api_prompt_errors(object_info):
    prompt = load("two_stage_i2v_480p", api=True)
    prompt["20"]["inputs"]["samples"] = ["999", 0]
    prompt["19"]["inputs"]["steps"] = -1
    errors = " | ".join(errors_of(prompt, object_info))
    assert "node 20: VAEDecode: input 'samples' comes from node 999, which is not in the prompt" in errors
    assert "node 19: KSampler: steps: -1 is below the minimum 1" in errors


# -- the converter ----------------------------------------------------------------

def test_converter_resolves_bypass_reroute_primitive_and_mute(object_info):
    wf = load("two_stage_i2v_480p")
    ids = {n.get("title") or n["type"]: n["id"] for n in wf["nodes"]}
    api = ui_to_api(wf, object_info)
    ckpt, lora, ks1 = ids["Load SDXL / Illustrious XL checkpoint"], ids["Character LoRA (optional: pick it, then Ctrl+B to enable)"], ids["KSampler (still)"]
    assert str(lora) not in api  # bypassed: MODEL and CLIP pass through from the checkpoint
    assert api[str(ks1)]["inputs"]["model"] == [str(ckpt), 0]
    assert api[str(ids["Still: positive prompt"])]["inputs"]["clip"] == [str(ckpt), 1]
    assert not any(n["class_type"] in ("Note", "MarkdownNote") for n in api.values())
    assert api[str(ks1)]["inputs"]["seed"] == 123456789 and "control_after_generate" not in api[str(ks1)]["inputs"]
    plan = ids["Stage Plan (pick the video size here)"]
    assert api[str(ids["Still size (from Stage Plan)"])]["inputs"]["width"] == [str(plan), 0]

    # A Reroute in the VAE link, a PrimitiveNode driving the Wan sampler's steps, the preview muted.
    dec1 = next(n for n in wf["nodes"] if n["type"] == "VAEDecode" and feeds(wf, n, "samples")[0]["id"] == ks1)
    vae_link = next(link for link in wf["links"] if link[3] == dec1["id"] and link[4] == 1)
    reroute_id, prim_id, new_link = 100, 101, max(link[0] for link in wf["links"]) + 1
    wf["nodes"].append({"id": reroute_id, "type": "Reroute", "pos": [0, 0], "size": [75, 26], "mode": 0,
                        "inputs": [{"name": "", "type": "*", "link": vae_link[0]}],
                        "outputs": [{"name": "", "type": "VAE", "links": [new_link]}], "properties": {}})
    wf["links"].append([new_link, reroute_id, 0, dec1["id"], 1, "VAE"])
    vae_link[3], vae_link[4] = reroute_id, 0
    dec1["inputs"][1]["link"] = new_link
    ks2 = next(n for n in wf["nodes"] if n.get("title") == "KSampler (Wan I2V)")
    ks2["inputs"].append({"name": "steps", "type": "INT", "widget": {"name": "steps"}, "link": new_link + 1})
    wf["nodes"].append({"id": prim_id, "type": "PrimitiveNode", "pos": [0, 0], "size": [200, 80], "mode": 0,
                        "inputs": [], "outputs": [{"name": "INT", "type": "INT", "links": [new_link + 1],
                                                   "widget": {"name": "steps"}}],
                        "properties": {"Run widget replace on values": False}, "widgets_values": [17, "fixed"]})
    wf["links"].append([new_link + 1, prim_id, 0, ks2["id"], len(ks2["inputs"]) - 1, "INT"])
    next(n for n in wf["nodes"] if n.get("title") == "The still")["mode"] = 2
    assert validate(wf, object_info).ok
    api = ui_to_api(wf, object_info)
    assert api[str(dec1["id"])]["inputs"]["vae"] == [str(ckpt), 2]
    assert api[str(ks2["id"])]["inputs"]["steps"] == 17
    assert str(ids["The still"]) not in api
    assert not ({str(reroute_id), str(prim_id)} & set(api))


def test_tiny_sdxl_is_detected_as_sdxl_family(comfy, tiny_models):
    import importlib

    load_torch_file = importlib.import_module("comfy.utils").load_torch_file
    detection = importlib.import_module("comfy.model_detection")
    sd = load_torch_file(str(tiny_models["sdxl"]))
    config = detection.model_config_from_unet(sd, "model.diffusion_model.")
    assert type(config).__name__ == "KOALA_700M"
    assert type(config).__mro__[1].__name__ == "SDXL"


# -- the demo ---------------------------------------------------------------------

@pytest.mark.slow
def test_demo_writes_a_new_video_and_keeps_existing_files(tiny_models, object_info, tmp_path):
    out = tmp_path / "output"
    taken = out / "video" / "two_stage_i2v_480p_00001_.mp4"
    taken.parent.mkdir(parents=True)
    taken.write_bytes(b"a user's own file")
    done = subprocess.run([sys.executable, "-m", "twostage_i2v", "demo", "--base-dir", str(tmp_path / "base"),
                           "--output", str(out)], cwd=inprocess.REPO_ROOT, capture_output=True, text=True,
                          timeout=1800)
    assert done.returncode == 0, done.stderr[-4000:]
    assert taken.read_bytes() == b"a user's own file"
    mp4 = out / "video" / "two_stage_i2v_480p_00002_.mp4"
    assert f"wrote {mp4} (9 frames, 16 fps, 64x64" in done.stdout
    assert decode_video(mp4)[:4] == (9, WAN_FPS, 64, 64)
    found = media_metadata.embedded(mp4)
    shipped = load(demo_graph.WORKFLOW)
    assert [n["type"] for n in found["workflow"]["nodes"]] == [n["type"] for n in shipped["nodes"]]
    assert found["prompt"] == ui_to_api(found["workflow"], object_info)
    assert "total wall time" in done.stdout and "RANDOM weights, so the video is noise" in done.stdout
    assert f"diffusion_models/{MODEL_FILES['wan_480p'].name}" in done.stdout


# -- the real server --------------------------------------------------------------

# What small_variant may change in workflow 1: the model files and the CPU sizes.
SMALL_RUN_CHANGES = {
    ("CheckpointLoaderSimple", "ckpt_name"), ("TwoStageI2V_WanI2VLoaderGGUF", "unet_name"),
    ("TwoStageI2V_TextEncoderGGUF", "clip_name"), ("CLIPVisionLoader", "clip_name"), ("VAELoader", "vae_name"),
    ("EmptyLatentImage", "width"), ("EmptyLatentImage", "height"), ("TwoStageI2V_StagePlan", "target"),
    ("TwoStageI2V_StagePlan", "width"), ("TwoStageI2V_StagePlan", "height"), ("TwoStageI2V_StageBridge", "frames"),
    ("KSampler", "steps"),
}


@pytest.mark.server
@pytest.mark.parametrize("name", NAMES)
def test_validates_against_the_server(server, name, capsys):
    for path in (WORKFLOWS_DIR / f"{name}.json", WORKFLOWS_DIR / "api" / f"{name}.json"):
        assert main(["validate-workflow", str(path), "--server", server.url]) == 0, capsys.readouterr().out
        assert "result: valid" in capsys.readouterr().out


@pytest.mark.server
def test_server_lists_the_templates(server):
    listed = server.client.get("/api/workflow_templates")
    assert sorted(listed[inprocess.PACKAGE_DIR_NAME]) == sorted(NAMES)
    for name in NAMES:
        served = server.client.get(f"/api/workflow_templates/{inprocess.PACKAGE_DIR_NAME}/{name}.json")
        assert served == load(name)
        with urllib.request.urlopen(f"{server.url}/api/workflow_templates/{inprocess.PACKAGE_DIR_NAME}/{name}.jpg") as r:
            assert Image.open(BytesIO(r.read())).size == (1024, 576)


@pytest.mark.server
@pytest.mark.slow
def test_workflow_1_end_to_end_on_the_server(workflow1_run, server, comfy_base, object_info, tmp_path, capsys):
    r = workflow1_run
    frames, fps, w, h, tags = decode_video(r.mp4)
    assert (frames, fps, w, h) == (r.run.frames, WAN_FPS, *r.run.video)
    # What was submitted comes back: FFmpeg's reading and this package's own.
    assert json.loads(tags["workflow"]) == r.workflow and json.loads(tags["prompt"]) == r.prompt
    assert media_metadata.embedded(r.mp4) == {"container": "isobmff", "workflow": r.workflow, "prompt": r.prompt}
    assert media_metadata.embedded(r.png) == {"container": "png", "workflow": r.workflow, "prompt": r.prompt}
    # The first-frame PNG is the video's first frame: h264 (4:2:0) is lossy on these noise frames, so the
    # PNG must be far closer to frame 0 than to any other frame, not equal to it.
    with av.open(str(r.mp4)) as c:
        video = [f.to_ndarray(format="rgb24").astype(np.float32) for f in c.decode(video=0)]
    with Image.open(r.png) as first:
        assert first.size == r.run.video
        first_png = np.asarray(first.convert("RGB"), dtype=np.float32)
    distance = [float(np.abs(frame - first_png).mean()) for frame in video]
    assert distance[0] < 0.5 * min(distance[1:]), distance
    for source in (r.mp4, r.png):
        out = tmp_path / f"{source.suffix[1:]}.json"
        assert main(["extract-workflow", str(source), "--out", str(out)]) == 0
        assert json.loads(out.read_text(encoding="utf-8")) == r.workflow
        # The workflow a video carries validates as it is, every model file it names present (--strict).
        capsys.readouterr()
        assert main(["validate-workflow", str(source), "--server", server.url, "--strict"]) == 0
        assert "result: valid" in capsys.readouterr().out
    # Both stages ran: the still is the stage-1 preview at the still size, and the video is 4n+1 frames of it.
    (still_node,) = [k for k, v in r.prompt.items() if v["class_type"] == "PreviewImage"]
    item = r.outputs[still_node]["images"][0]
    with Image.open(Path(comfy_base) / item["type"] / item.get("subfolder", "") / item["filename"]) as still:
        assert still.size == r.run.still
    # Only model names and the stated CPU sizes differ from the shipped workflow 1.
    shipped = load(demo_graph.WORKFLOW)
    assert [n["id"] for n in r.workflow["nodes"]] == [n["id"] for n in shipped["nodes"]]
    assert [n["type"] for n in r.workflow["nodes"]] == [n["type"] for n in shipped["nodes"]]
    changed = set()
    for ran, ship in zip(r.workflow["nodes"], shipped["nodes"]):
        if ran["type"] in ("Note", "MarkdownNote"):
            assert ran == ship
            continue
        a, b = widgets(ran, object_info), widgets(ship, object_info)
        changed |= {(ran["type"], k) for k in a if a[k] != b[k]}
    assert changed <= SMALL_RUN_CHANGES, changed - SMALL_RUN_CHANGES
    assert {("TwoStageI2V_WanI2VLoaderGGUF", "unet_name"), ("KSampler", "steps")} <= changed
