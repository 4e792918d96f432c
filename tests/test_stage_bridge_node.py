"""Nodes "Stage Bridge (image → Wan I2V frame)" and "Stage Plan" in ComfyUI.

Oracles: the agreed interface (widget order, options, defaults), the core
library's plan and pixels (the node must be a thin wrapper), Pillow's resize
for the pixels, and a real Wan I2V graph whose decoded video must have the
planned size and length.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from twostage_i2v.bridge import geometry, pixels
from twostage_i2v.headless.api_graphs import decode_video, saved_videos, wan_i2v_prompt, write_start_image

pytestmark = pytest.mark.comfy

NODE = "TwoStageI2V_StageBridge"
PLAN_NODE = "TwoStageI2V_StagePlan"
TARGETS = ["832x480 (480p)", "480x832 (480p portrait)", "624x624 (480p square)", "1280x720 (720p)",
           "720x1280 (720p portrait)", "1280x704 (5B)", "704x1280 (5B portrait)", "custom"]
DEFAULTS = dict(target="832x480 (480p)", width=832, height=480, orientation="auto", fit="crop", anchor="center",
                pad_style="color", pad_color="#000000", resample="lanczos", length_from="frames", frames=81,
                seconds=5.0, fps=16.0)


def run_bridge(comfy, image, **kw):
    out = comfy.node_class(NODE).execute(image=image, **{**DEFAULTS, **kw})
    return (*out.args, out.ui)


def gradient(w, h, c=3, b=1, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    frames = []
    for _ in range(b):
        base = np.stack([x / w, y / h, 0.5 + 0.4 * np.sin(x / 9.0)] + [np.full((h, w), 0.7)] * (c - 3), -1)
        frames.append(np.clip(base + rng.normal(0, 0.02, base.shape), 0, 1)[..., :c])
    return torch.from_numpy(np.stack(frames).astype(np.float32))


def test_schemas_match_the_agreed_interface(comfy):
    schema = comfy.node_class(NODE).define_schema()
    assert schema.display_name == "Stage Bridge (image → Wan I2V frame)" and schema.category == "TwoStage I2V"
    assert [i.id for i in schema.inputs] == [
        "image", "target", "width", "height", "orientation", "fit", "anchor", "pad_style", "pad_color", "resample",
        "length_from", "frames", "seconds", "fps"]
    by_id = {i.id: i for i in schema.inputs}
    combos = {"target": (TARGETS, "832x480 (480p)"), "orientation": (["auto", "as target"], "auto"),
              "fit": (["crop", "pad", "stretch", "official_area"], "crop"),
              "anchor": (["center", "top", "bottom", "left", "right"], "center"),
              "pad_style": (["color", "edge", "blur"], "color"),
              "resample": (["lanczos", "bicubic", "area", "bilinear"], "lanczos"),
              "length_from": (["frames", "seconds"], "frames")}
    for key, (options, default) in combos.items():
        assert (by_id[key].options, by_id[key].default) == (options, default), key
    for key, default in (("width", 832), ("height", 480)):
        assert (by_id[key].default, by_id[key].min, by_id[key].max, by_id[key].step) == (default, 16, 4096, 16)
    assert (by_id["frames"].default, by_id["frames"].min, by_id["frames"].max) == (81, 1, 1025)
    assert by_id["pad_color"].default == "#000000"
    assert (by_id["seconds"].default, by_id["fps"].default) == (5.0, 16.0)
    assert [(o.io_type, o.display_name) for o in schema.outputs] == [
        ("IMAGE", "image"), ("INT", "width"), ("INT", "height"), ("INT", "length"), ("MASK", "mask")]

    plan = comfy.node_class(PLAN_NODE).define_schema()
    assert plan.display_name == "Stage Plan (SDXL size for a Wan target)" and plan.category == "TwoStage I2V"
    assert [i.id for i in plan.inputs] == ["target", "width", "height"]
    assert plan.inputs[0].options == TARGETS
    assert [(o.io_type, o.display_name) for o in plan.outputs] == [
        ("INT", "stage1_width"), ("INT", "stage1_height"), ("INT", "width"), ("INT", "height")]


def test_bridge_node_is_the_core_plan_and_pixels(comfy):
    image = gradient(1216, 832)
    out, w, h, length, mask, ui = run_bridge(comfy, image, fit="pad", pad_style="blur", anchor="top",
                                             length_from="seconds", seconds=3.0, fps=24.0)
    details = geometry.plan_details(1216, 832, 832, 480, "pad", "auto", "top")
    want, want_mask = pixels.apply_plan(image, details, "lanczos", "blur", "#000000")
    assert (w, h) == (832, 480) and out.shape == (1, 480, 832, 3)
    assert torch.equal(out, want) and torch.equal(mask, want_mask)
    assert length == 73 == geometry.snap_length(72)
    # The image part is Pillow's Lanczos of the whole source (float planes, per channel).
    x, y, cw, ch = details["content"]
    assert (x, y) == (65, 0)
    ref = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(image[0, ..., c].numpy())).resize(
        (cw, ch), Image.Resampling.LANCZOS)) for c in range(3)], -1)
    assert float(np.abs(out[0, y:y + ch, x:x + cw].numpy() - np.clip(ref, 0, 1)).max()) < 1e-6

    text = geometry.describe(details, "lanczos", "blur", "#000000",
                           "length: 3 s x 24 fps = 72 frames -> 73 (snapped to 4n+1)", 1, 3)
    assert ui["text"] == [text]
    assert text.splitlines()[0] == "Wan frame 832x480 from a 1216x832 image"
    assert "UPSCALED" not in text
    (plan,) = ui["bridge_plan"]
    assert plan == {**details, "length": 73}
    assert plan["content"] == [65, 0, 702, 480] and plan["source"] == [1216, 832] and plan["crop"] is None


def test_bridge_node_says_when_it_upscales_and_turns_for_portrait(comfy):
    image = gradient(360, 640, c=4, b=2)
    out, w, h, length, mask, ui = run_bridge(comfy, image, frames=80)
    assert (w, h, length) == (480, 832, 81) and out.shape == (2, 832, 480, 3) and mask.shape == (2, 832, 480)
    lines = ui["text"][0].splitlines()
    assert lines[0] == "Wan frame 480x832 from a 360x640 image, 2 images"
    assert "orientation auto: target turned to 480x832 to follow the portrait image" in lines
    assert "alpha composited on #000000" in lines
    assert "length: 80 frames -> 81 (snapped to 4n+1)" in lines
    assert lines[-1].startswith("UPSCALED x1.333: the image is smaller than the frame")
    assert ui["bridge_plan"][0]["upscaled"] is True and ui["bridge_plan"][0]["crop"] == [0, 8, 360, 624]


def test_bridge_node_refuses_bad_custom_sizes_and_images(comfy):
    with pytest.raises(ValueError, match="custom width 100 is not a multiple of 16: .*use 96 or 112"):
        run_bridge(comfy, gradient(64, 64), target="custom", width=100, height=64)
    with pytest.raises(ValueError, match="image has 6 channels"):
        run_bridge(comfy, torch.zeros(1, 32, 32, 6))
    nan = gradient(64, 64)
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="1 NaN"):
        run_bridge(comfy, nan)


def test_stage_plan_node(comfy):
    node = comfy.node_class(PLAN_NODE)
    for target in TARGETS[:-1]:
        tw, th = geometry.PRESETS[target]
        out = node.execute(target=target, width=832, height=480)
        assert tuple(out.args) == (*geometry.stage1_size(tw, th), tw, th)
    out = node.execute(target="832x480 (480p)", width=16, height=16)
    assert tuple(out.args) == (1344, 768, 832, 480)
    assert out.ui == {"text": ["stage 1: 1344x768 (1.03 MP) -> Wan 832x480"]}
    out = node.execute(target="custom", width=96, height=64)
    assert tuple(out.args[2:]) == (96, 64)
    with pytest.raises(ValueError, match="custom height 50 is not a multiple of 16"):
        node.execute(target="custom", width=96, height=50)


def test_bridge_feeds_wan_image_to_video(comfy, comfy_base, tiny_models):
    image = write_start_image(comfy_base / "input", "bridge_start.png", size=(150, 80))
    prompt = wan_i2v_prompt(tiny_models, image, prefix="stage_bridge/graph")
    prompt["bridge"] = {"class_type": NODE, "inputs": {
        **DEFAULTS, "image": ["image", 0], "target": "custom", "width": 96, "height": 64, "fit": "pad",
        "pad_style": "edge", "frames": 6}}
    prompt["clip_vision_encode"]["inputs"]["image"] = ["bridge", 0]
    prompt["i2v"]["inputs"].update(start_image=["bridge", 0], width=["bridge", 1], height=["bridge", 2],
                                   length=["bridge", 3])
    result = comfy.run_prompt(prompt)

    (plan,) = result.outputs["bridge"]["bridge_plan"]
    assert (plan["width"], plan["height"], plan["length"]) == (96, 64, 5)
    assert plan["content"] == [0, 6, 96, 51] and plan["upscaled"] is False
    (text,) = result.outputs["bridge"]["text"]
    assert text.splitlines()[0] == "Wan frame 96x64 from a 150x80 image"
    assert "length: 6 frames -> 5 (snapped to 4n+1)" in text.splitlines()

    videos = saved_videos(result.outputs, comfy_base / "output")
    assert len(videos) == 1 and videos[0].is_file()
    frames, _, width, height, _ = decode_video(videos[0])
    assert (frames, width, height) == (5, 96, 64)
