"""The Wan 2.2 and 4-step workflows (issue 19): what they hold, and each one run end to end on the
small models through the in-process ComfyUI, writing an MP4 that carries its workflow.

Oracles: the official settings (Wan2.2 ``wan/configs``, the lightx2v LoRAs' 4 steps at cfg 1), the
graph itself (which node feeds which), ComfyUI's own validate_prompt and execution, PyAV's decoding of
the video, the package's reading of the container tags, and for the A14B switch the official rule on
sigmas from ``comfy.samplers.calculate_sigmas``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from twostage_i2v.models.kind import expert_from
from twostage_i2v.workflow.build import (A14B_CFG, A14B_SHIFT, A14B_STEPS, FAST_CFG, FAST_SHIFT, FAST_STEPS,
                                         MODEL_FILES, SPEC_BY_NAME, TI2V_CFG, TI2V_FPS, TI2V_FRAMES, TI2V_SHIFT,
                                         TI2V_STEPS, WAN_FPS, WAN_FRAMES, find_nodes)
from twostage_i2v.workflow.convert import widget_values_by_name

pytestmark = pytest.mark.comfy

WORKFLOWS_DIR = Path(__file__).resolve().parents[1] / "workflows"
A14B = ["two_stage_wan22_i2v_a14b_480p", "two_stage_wan22_i2v_a14b_480p_4step"]
TI2V = "two_stage_wan22_ti2v_5b_720p"
WAN21_FAST = "two_stage_i2v_480p_4step"
NEW = [*A14B, TI2V, WAN21_FAST]
STAGE1 = ["CheckpointLoaderSimple", "LoraLoader", "CLIPTextEncode", "CLIPTextEncode", "EmptyLatentImage",
          "TwoStageI2V_StagePlan", "KSampler", "VAEDecode", "PreviewImage", "TwoStageI2V_StageBridge"]
OUTPUT = ["TwoStageI2V_TextEncoderGGUF", "TwoStageI2V_MotionPrompt", "VAELoader", "VAEDecode", "CreateVideo",
          "SaveVideo", "ImageFromBatch", "SaveImage"]


def asked_fps(prompt: dict) -> float:
    (fps,) = [v["inputs"]["fps"] for v in prompt.values() if v["class_type"] == "CreateVideo"]
    return fps


def load(name: str) -> dict:
    return json.loads((WORKFLOWS_DIR / f"{name}.json").read_text(encoding="utf-8"))


def widgets(node, object_info):
    return widget_values_by_name(object_info[node["type"]], node["widgets_values"])


def feeds(wf, node, input_name):
    """(origin node, origin slot) of the link into ``node``'s input, or None."""
    lid = next((i["link"] for i in node["inputs"] if i["name"] == input_name), None)
    if lid is None:
        return None
    link = next(link for link in wf["links"] if link[0] == lid)
    return next(n for n in wf["nodes"] if n["id"] == link[1]), link[2]


def upstream_model(wf, node):
    """The Wan loader at the start of the MODEL chain into ``node``, and the nodes on the way."""
    chain = []
    origin, _ = feeds(wf, node, "model")
    while origin["type"] != "TwoStageI2V_WanI2VLoaderGGUF":
        chain.append(origin)
        origin, _ = feeds(wf, origin, "model")
    return origin, chain


def node_types(wf):
    return sorted(n["type"] for n in wf["nodes"] if n["type"] not in ("Note", "MarkdownNote"))


# ---------------------------------------------------------------- what the files hold


@pytest.mark.parametrize("name", A14B)
def test_a14b_workflow(name, object_info):
    wf, fast = load(name), SPEC_BY_NAME[name].fast
    expected = STAGE1 + OUTPUT + ["TwoStageI2V_WanI2VLoaderGGUF"] * 2 + ["ModelSamplingSD3"] * 2 + [
        "TwoStageI2V_WanExpertSplit", "KSamplerAdvanced", "KSamplerAdvanced", "WanImageToVideo"]
    expected += ["LoraLoaderModelOnly"] * 2 if fast else []
    assert node_types(wf) == sorted(expected)  # no CLIP vision: Wan 2.2 has no image cross-attention
    (split,) = find_nodes(wf, "TwoStageI2V_WanExpertSplit")
    (i2v,) = find_nodes(wf, "WanImageToVideo")
    assert feeds(wf, i2v, "clip_vision_output") is None
    high, low = sorted(find_nodes(wf, "KSamplerAdvanced"), key=lambda n: widgets(n, object_info)["add_noise"],
                       reverse=True)
    steps, cfg, shift = (FAST_STEPS, FAST_CFG, FAST_SHIFT) if fast else (A14B_STEPS, A14B_CFG, A14B_SHIFT)
    s = widgets(split, object_info)
    assert (s["steps"], s["boundary"]) == (steps, "0.900 (I2V A14B)")
    for ks, side, add_noise, leftover in ((high, "high_noise", "enable", "enable"), (low, "low_noise", "disable", "disable")):
        w = widgets(ks, object_info)
        assert (w["add_noise"], w["return_with_leftover_noise"], w["cfg"]) == (add_noise, leftover, cfg)
        assert (w["sampler_name"], w["scheduler"]) == (s["sampler_name"], s["scheduler"]) == ("euler", "simple")
        assert feeds(wf, ks, "steps") == (split, 1)
        loader, chain = upstream_model(wf, ks)
        # The loader's file is the expert this sampler needs, by the same reading the loader uses.
        assert expert_from(widgets(loader, object_info)["unet_name"])[0] == side
        assert [n["type"] for n in chain] == ["ModelSamplingSD3"] + (["LoraLoaderModelOnly"] if fast else [])
        assert widgets(chain[0], object_info)["shift"] == shift
        if fast:
            lora = widgets(chain[1], object_info)
            assert lora["strength_model"] == 1.0 and expert_from(lora["lora_name"])[0] == side
        assert feeds(wf, split, "model" if side == "high_noise" else "low_noise_model")[0] is chain[0]
    assert feeds(wf, high, "end_at_step") == (split, 0) and feeds(wf, low, "start_at_step") == (split, 0)
    assert widgets(high, object_info)["start_at_step"] == 0 and widgets(low, object_info)["end_at_step"] == 10000
    assert feeds(wf, high, "latent_image")[0] is i2v and feeds(wf, low, "latent_image")[0] is high
    (vae,) = find_nodes(wf, "VAELoader")
    assert widgets(vae, object_info)["vae_name"] == MODEL_FILES["vae"].name  # A14B uses the Wan 2.1 VAE
    (bridge,) = find_nodes(wf, "TwoStageI2V_StageBridge")
    assert (widgets(bridge, object_info)["frames"], widgets(find_nodes(wf, "CreateVideo")[0], object_info)["fps"]) == (
        WAN_FRAMES, WAN_FPS)


@pytest.mark.parametrize("name", A14B)
def test_a14b_switch_shown_on_the_file_is_what_the_node_computes(comfy, tiny_models, name, object_info):
    """The linked step widgets show a switch; the Expert Split node, run on an A14B expert with the
    workflow's shift, sampler, scheduler and steps, gives that same step."""
    wf = load(name)
    (split,) = find_nodes(wf, "TwoStageI2V_WanExpertSplit")
    s = widgets(split, object_info)
    high = next(n for n in find_nodes(wf, "KSamplerAdvanced") if widgets(n, object_info)["add_noise"] == "enable")
    shift = widgets(feeds(wf, split, "model")[0], object_info)["shift"]
    model = comfy.nodes.UNETLoader().load_unet(tiny_models["wan22_i2v_high"].name, "default")[0]
    model = comfy.node_class("ModelSamplingSD3")().patch(model, shift)[0]
    out = comfy.node_class("TwoStageI2V_WanExpertSplit").execute(
        model, s["steps"], s["sampler_name"], s["scheduler"], s["boundary"], s["custom_boundary"])
    assert out.result[0] == widgets(high, object_info)["end_at_step"] == (2 if SPEC_BY_NAME[name].fast else 15)


def test_ti2v_5b_workflow(object_info):
    wf = load(TI2V)
    expected = STAGE1 + OUTPUT + ["TwoStageI2V_WanI2VLoaderGGUF", "ModelSamplingSD3", "Wan22ImageToVideoLatent",
                                  "KSampler"]
    assert node_types(wf) == sorted(expected)
    (latent,) = find_nodes(wf, "Wan22ImageToVideoLatent")
    (bridge,) = find_nodes(wf, "TwoStageI2V_StageBridge")
    assert [feeds(wf, latent, k)[0]["id"] for k in ("width", "height", "length", "start_image")] == [bridge["id"]] * 4
    (plan,) = find_nodes(wf, "TwoStageI2V_StagePlan")
    assert widgets(plan, object_info)["target"] == "1280x704 (5B)"
    b = widgets(bridge, object_info)
    assert (b["frames"], b["fps"]) == (TI2V_FRAMES, TI2V_FPS) == (121, 24.0)
    assert widgets(find_nodes(wf, "CreateVideo")[0], object_info)["fps"] == 24.0
    (ks,) = [n for n in find_nodes(wf, "KSampler") if feeds(wf, n, "latent_image")[0] is latent]
    w = widgets(ks, object_info)
    assert (w["steps"], w["cfg"], w["sampler_name"]) == (TI2V_STEPS, TI2V_CFG, "uni_pc") == (50, 5.0, "uni_pc")
    loader, chain = upstream_model(wf, ks)
    assert widgets(loader, object_info)["unet_name"] == MODEL_FILES["wan22_5b"].name
    assert [n["type"] for n in chain] == ["ModelSamplingSD3"] and widgets(chain[0], object_info)["shift"] == TI2V_SHIFT
    assert feeds(wf, latent, "vae")[0]["type"] == "VAELoader"
    assert widgets(feeds(wf, latent, "vae")[0], object_info)["vae_name"] == "wan2.2_vae.safetensors"


def test_wan21_4step_workflow(object_info):
    wf = load(WAN21_FAST)
    (i2v,) = find_nodes(wf, "WanImageToVideo")
    (ks,) = [n for n in find_nodes(wf, "KSampler") if feeds(wf, n, "latent_image")[0] is i2v]
    w = widgets(ks, object_info)
    assert (w["steps"], w["cfg"], w["sampler_name"], w["scheduler"]) == (4, 1.0, "euler", "simple")
    loader, chain = upstream_model(wf, ks)
    assert [n["type"] for n in chain] == ["ModelSamplingSD3", "LoraLoaderModelOnly"]
    assert widgets(chain[0], object_info)["shift"] == 5.0
    assert widgets(chain[1], object_info) == {"lora_name": MODEL_FILES["lora21_4step"].name, "strength_model": 1.0}
    assert feeds(wf, i2v, "clip_vision_output")[0]["type"] == "CLIPVisionEncode"  # 2.1 keeps CLIP vision


@pytest.mark.parametrize("name", NEW)
def test_notes_list_every_model_file(name):
    wf = load(name)
    files = {(m["directory"], m["name"], m["url"]) for n in wf["nodes"] for m in n["properties"].get("models", [])}
    (note,) = [n["widgets_values"][0] for n in wf["nodes"] if n.get("title") == "Model files"]
    assert files and all(f"**{d}/** [{n}]({u})" in note for d, n, u in files)
    for _, n, u in files:
        assert u.startswith("https://huggingface.co/") and u.endswith("/" + n)


# ---------------------------------------------------------------- run small, end to end


def official_switch(comfy, tiny_models, api):
    """The switch by Wan2.2's rule on ComfyUI's sigmas for the run's settings (high expert's shift)."""
    import comfy.samplers as samplers

    (split_id,) = [k for k, v in api.items() if v["class_type"] == "TwoStageI2V_WanExpertSplit"]
    s = api[split_id]["inputs"]
    shift = api[s["model"][0]]["inputs"]["shift"]
    model = comfy.nodes.UNETLoader().load_unet(tiny_models["wan22_i2v_high"].name, "default")[0]
    ms = comfy.node_class("ModelSamplingSD3")().patch(model, shift)[0].get_model_object("model_sampling")
    sigmas = samplers.calculate_sigmas(ms, s["scheduler"], s["steps"])
    t = ms.timestep(sigmas[:-1])
    return split_id, next((i for i in range(len(t)) if t[i] < 900), len(t))


@pytest.mark.slow
@pytest.mark.parametrize("name", NEW)
def test_small_run_loads_the_wan22_stand_ins_and_switches_where_the_official_rule_says(
        comfy, tiny_models, small_workflow_run, name):
    # The same run as test_shipped_workflows_run's, which checks the MP4 and its workflow.
    done = small_workflow_run(name)
    names, run, api, result = done.names, done.run, done.prompt, done.result
    assert (run.frames, TI2V_FPS if name == TI2V else WAN_FPS) == (done.run.frames, asked_fps(api))
    used = {v["inputs"].get("unet_name") for v in api.values() if v["class_type"] == "TwoStageI2V_WanI2VLoaderGGUF"}
    assert used == {names[k] for k in names if k.startswith("wan")}
    if name in A14B:
        split_id, expected = official_switch(comfy, tiny_models, api)
        report = result.outputs[split_id]["expert_split"][0]
        assert report["switch"] == expected and report["steps"] == run.steps
        assert result.outputs[split_id]["text"][0].startswith(f"switch at step {expected} of {run.steps}")


@pytest.mark.core
def test_bridge_knows_the_5b_sizes_and_clip():
    from twostage_i2v.bridge import geometry

    assert geometry.target_size("1280x704 (5B)") == (1280, 704)
    assert geometry.target_size("704x1280 (5B portrait)") == (704, 1280)
    # The Wan 2.2 VAE packs 16x16 pixels per latent and the 5B's patch is 2: multiples of 32.
    assert all(v % 32 == 0 for v in (*geometry.PRESETS["1280x704 (5B)"], *geometry.PRESETS["704x1280 (5B portrait)"]))
    assert geometry.TARGETS[0] == "832x480 (480p)" and geometry.TARGETS[-1] == "custom"
    assert geometry.CLIPS["wan2.2-ti2v-5b"] == (121, 24.0) and geometry.CLIPS["wan2.2-a14b"] == (81, 16.0)
    assert geometry.clip_length("seconds", seconds=5.0, fps=24.0) == (121, "length: 5 s x 24 fps = 120 frames -> 121 (snapped to 4n+1)")
    assert geometry.snap_length(121) == 121 and (121 - 1) % 4 == 0
    # A portrait still for the 5B frame: auto orientation turns the target, as for 2.1.
    details = geometry.plan_details(768, 1344, 1280, 704, "crop")
    assert (details["width"], details["height"]) == (704, 1280) and details["swapped"]
