"""Node "Motion Prompt (Wan I2V)" in ComfyUI, with the small GGUF umt5 text encoder.

Oracles: core CLIPTextEncode on the same CLIP (the conditioning must be the
same tensors), the tokenizer's own output for the token count (end token id 1,
then padding), the lint library for the report, and a real Wan I2V graph run.
"""

from __future__ import annotations

import pytest
import torch

from twostage_i2v.prompt import lint as prompt_lint, wan_prompts
from twostage_i2v.tiny import umt5 as tiny_umt5
from twostage_i2v.headless.api_graphs import decode_video, saved_videos, wan_i2v_prompt, write_start_image

pytestmark = pytest.mark.comfy

NODE = "TwoStageI2V_MotionPrompt"


@pytest.fixture(scope="module")
def clip(comfy, tiny_models):
    return comfy.node_class("TwoStageI2V_TextEncoderGGUF").execute(clip_name=tiny_models["umt5_f32"].name)[0]


def run_node(comfy, clip, motion, camera="none", pace="natural", negative=wan_prompts.WAN_I2V_NEGATIVE, lint="warn"):
    out = comfy.node_class(NODE).execute(clip=clip, motion=motion, camera=camera, pace=pace, negative=negative, lint=lint)
    return (*out.args, out.ui)


def clip_text_encode(comfy, clip, text):
    return comfy.node_class("CLIPTextEncode")().encode(clip, text)[0]


def assert_same_conditioning(a, b):
    assert len(a) == len(b)
    for (ta, da), (tb, db) in zip(a, b):
        assert ta.dtype == tb.dtype and ta.shape == tb.shape
        assert torch.equal(ta, tb)
        assert da.keys() == db.keys()
        for k in da:
            if isinstance(da[k], torch.Tensor):
                assert torch.equal(da[k], db[k]), k
            else:
                assert da[k] == db[k], k


def tokens_by_the_tokenizer(clip, text) -> int:
    """Tokens up to and including umt5's end token (id 1); the rest is padding (id 0)."""
    ids = [t[0] for t in clip.tokenize(text)["umt5xxl"][0]]
    n = ids.index(1) + 1
    assert set(ids[n:]) <= {0}
    return n


def test_schema_matches_the_agreed_interface(comfy):
    schema = comfy.node_class(NODE).define_schema()
    assert schema.display_name == "Motion Prompt (Wan I2V)" and schema.category == "TwoStage I2V"
    assert [i.id for i in schema.inputs] == ["clip", "motion", "camera", "pace", "negative", "lint"]
    by_id = {i.id: i for i in schema.inputs}
    assert by_id["motion"].multiline and by_id["negative"].multiline
    assert by_id["camera"].options == list(wan_prompts.CAMERA_PRESETS) and by_id["camera"].default == "none"
    assert by_id["pace"].options == ["slow", "natural", "fast"] and by_id["pace"].default == "natural"
    assert by_id["negative"].default == wan_prompts.WAN_I2V_NEGATIVE
    assert by_id["lint"].options == ["warn", "strip", "off"] and by_id["lint"].default == "warn"
    assert [(o.io_type, o.display_name) for o in schema.outputs] == [
        ("CONDITIONING", "positive"), ("CONDITIONING", "negative"), ("STRING", "prompt"), ("STRING", "report")]


def test_conditioning_equals_clip_text_encode(comfy, clip):
    motion = "Her hair sways gently in the breeze, she blinks and tilts her head slightly"
    positive, negative, prompt, report, ui = run_node(comfy, clip, motion, camera="pan left", pace="slow")
    assert prompt == wan_prompts.compose_prompt(motion, "pan left", "slow")
    assert prompt == motion + ", the camera pans left, slow, gentle motion"
    assert_same_conditioning(positive, clip_text_encode(comfy, clip, prompt))
    assert_same_conditioning(negative, clip_text_encode(comfy, clip, tiny_umt5.WAN_NEGATIVE_PROMPT))
    assert_same_conditioning(negative, clip_text_encode(comfy, clip, wan_prompts.WAN_I2V_NEGATIVE))
    assert positive[0][0].shape == (1, 512, 4096)
    # The negative really differs from the positive (guards against encoding one text twice).
    assert not torch.equal(positive[0][0], negative[0][0])

    n = tokens_by_the_tokenizer(clip, prompt)
    assert report == f"lint: clean, no warnings\ntokens: {n} umt5 (limit 512)\nprompt: {prompt}"
    assert ui == {"text": [report]}


def test_edited_negative_is_encoded_as_given(comfy, clip):
    _, negative, _, _, _ = run_node(comfy, clip, "she blinks", negative="static, blurry")
    assert_same_conditioning(negative, clip_text_encode(comfy, clip, "static, blurry"))


def test_strip_mode_encodes_the_stripped_text_and_reports_removals(comfy, clip):
    motion = "1girl, blonde hair, (masterpiece:1.2), her hair sways, she blinks"
    positive, _, prompt, report, ui = run_node(comfy, clip, motion, camera="static", lint="strip")
    assert prompt == "her hair sways, she blinks, static shot, the camera stays fixed"
    assert_same_conditioning(positive, clip_text_encode(comfy, clip, prompt))
    assert 'removed (lint=strip): "1girl", "blonde hair", "(masterpiece:1.2)"' in report.splitlines()
    assert report.splitlines()[0] == "lint: clean, no warnings"
    assert ui == {"text": [report]}


def test_warn_mode_keeps_the_text_and_lists_the_warnings(comfy, clip):
    motion = "1girl, she dances, spins and waves, the camera pans right"
    positive, _, prompt, report, _ = run_node(comfy, clip, motion, camera="pan left", lint="warn")
    assert prompt == motion + ", the camera pans left"
    assert_same_conditioning(positive, clip_text_encode(comfy, clip, prompt))
    expected = prompt_lint.lint_prompt(prompt, tokenizer=prompt_lint.clip_token_counter(clip))
    assert [w["category"] for w in expected] == ["appearance", "camera", "actions"]
    lines = report.splitlines()
    assert lines[0] == "lint: 3 warnings"
    assert lines[1:4] == [f"- {w['category']}: {w['message']}" for w in expected]


def test_off_mode_reports_no_checks(comfy, clip):
    _, _, prompt, report, _ = run_node(comfy, clip, "blonde hair, 1girl", lint="off")
    assert prompt == "blonde hair, 1girl"
    assert report == "lint: off\nprompt: blonde hair, 1girl"


def test_length_warning_counts_umt5_tokens(comfy, clip):
    counter = prompt_lint.clip_token_counter(clip)
    assert counter is not None
    short = "a girl turns her head slowly and smiles at the camera"
    assert counter(short) == tokens_by_the_tokenizer(clip, short)
    assert counter("") == 1  # the end token alone
    long = " ".join([short] * 25)
    n = tokens_by_the_tokenizer(clip, long)
    assert n > 512 and counter(long) == n
    _, _, _, report, _ = run_node(comfy, clip, long)
    assert f"- length: {n} umt5 tokens, over the 512 Wan 2.1 was trained with; shorten the prompt" in report.splitlines()
    assert f"tokens: {n} umt5 (limit 512)" in report.splitlines()


def test_empty_motion_is_reported_and_still_encodes(comfy, clip):
    positive, _, prompt, report, _ = run_node(comfy, clip, "   ")
    assert prompt == ""
    assert report.splitlines()[1].startswith("- empty: the prompt is empty")
    assert_same_conditioning(positive, clip_text_encode(comfy, clip, ""))


def test_node_in_a_wan_i2v_graph_reports_to_the_ui(comfy, comfy_base, tiny_models):
    image = write_start_image(comfy_base / "input")
    prompt = wan_i2v_prompt(tiny_models, image, length=5, prefix="motion_prompt/graph")
    del prompt["positive"], prompt["negative"]
    prompt["motion"] = {"class_type": NODE, "inputs": {
        "clip": ["text_encoder", 0], "motion": "blonde hair, her hair sways gently, she blinks", "camera": "slow push-in",
        "pace": "slow", "negative": wan_prompts.WAN_I2V_NEGATIVE, "lint": "strip"}}
    prompt["i2v"]["inputs"].update(positive=["motion", 0], negative=["motion", 1])
    result = comfy.run_prompt(prompt)

    (report,) = result.outputs["motion"]["text"]
    final = "her hair sways gently, she blinks, the camera slowly pushes in, slow, gentle motion"
    assert report.splitlines()[0] == "lint: clean, no warnings"
    assert 'removed (lint=strip): "blonde hair"' in report.splitlines()
    assert report.splitlines()[-1] == f"prompt: {final}"

    videos = saved_videos(result.outputs, comfy_base / "output")
    assert len(videos) == 1 and videos[0].is_file()
    frames, _, width, height, _ = decode_video(videos[0])
    assert (frames, width, height) == (5, 64, 64)
