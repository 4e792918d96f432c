"""The package's HTTP routes (nodes/routes.py) on the real ComfyUI server."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.parse
import urllib.request

import pytest

from twostage_i2v.bridge import geometry
from twostage_i2v.prompt import lint as prompt_lint, wan_prompts
from twostage_i2v.models.summary import summarize_file
from twostage_i2v.tiny.models import MODELS

pytestmark = pytest.mark.server
# The tiny Wan I2V GGUF the tiny_models fixture links into models/diffusion_models/.
TINY_WAN_GGUF = MODELS["wan_i2v_q4_k_m"].file_name


def call(server, path: str, body=None, raw: bytes | None = None):
    """(HTTP status, JSON body) for a request whose path and query are sent exactly as given."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(server.url + path, data=data, method="POST" if data is not None else "GET",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def inspect_path(folder: str, name: str) -> str:
    return "/twostage_i2v/inspect?" + urllib.parse.urlencode({"folder": folder, "file": name})


@pytest.fixture(scope="module")
def gguf(server, tiny_models):
    return tiny_models["wan_i2v_q4_k_m"]


@pytest.fixture(scope="module")
def secret(comfy_base, gguf):
    """A real GGUF outside every model folder: what a traversal would try to reach."""
    path = comfy_base / "input" / "secret.gguf"
    shutil.copyfile(gguf, path)
    return path


def expected_summary(path, folder: str, name: str) -> dict:
    s = summarize_file(path)
    s.update(folder=folder, file=name)
    return json.loads(json.dumps(s))  # tuples become lists, as in the response


def test_routes_are_not_registered_in_process(comfy):
    # In-process ComfyUI (tests, the demo) has no PromptServer: register() must do nothing.
    routes = __import__(f"{comfy.package.__name__}.nodes.routes", fromlist=["routes"])
    assert routes.register() is False


def test_inspect_returns_the_summary_of_a_model_in_the_folder(server, gguf):
    status, body = call(server, inspect_path("diffusion_models", TINY_WAN_GGUF))
    assert status == 200, body
    assert body == expected_summary(gguf, "diffusion_models", TINY_WAN_GGUF)
    assert body["kind"] == "wan-i2v"
    # ComfyUI's legacy folder name and the /api prefix the frontend uses give the same file.
    status, legacy = call(server, "/api" + inspect_path("unet", TINY_WAN_GGUF))
    assert status == 200 and legacy == {**body, "folder": "unet"}


def test_inspect_text_encoder_folder(server, tiny_models):
    name = tiny_models["umt5_q8_0"].name
    status, body = call(server, inspect_path("text_encoders", name))
    assert status == 200, body
    assert body == expected_summary(tiny_models["umt5_q8_0"], "text_encoders", name)
    assert body["kind"] == "umt5" and "Q8_0" in body["tensor_types"]


@pytest.mark.parametrize("query", [
    "folder=diffusion_models&file=../../input/secret.gguf",
    "folder=diffusion_models&file=%2e%2e/%2e%2e/input/secret.gguf",
    "folder=diffusion_models&file=%2E%2E%2F%2E%2E%2Finput%2Fsecret.gguf",
    "folder=diffusion_models&file=..%5C..%5Cinput%5Csecret.gguf",
    "folder=text_encoders&file=sub/../../../input/secret.gguf",
    "folder=diffusion_models&file=C:%2Fsecret.gguf",
])
def test_inspect_refuses_traversal(server, secret, query):
    status, body = call(server, "/twostage_i2v/inspect?" + query)
    assert status == 400, body
    assert "kind" not in body and (".." in body["error"] or "absolute" in body["error"]), body


def test_inspect_refuses_absolute_paths(server, secret, gguf):
    for path in (secret, gguf):  # even one that is inside the folder
        status, body = call(server, inspect_path("diffusion_models", str(path)))
        assert status == 400 and "absolute" in body["error"], body


@pytest.mark.parametrize("folder,name", [
    ("checkpoints", "sdxl_tiny_random.safetensors"),
    ("vae", "wan_2.1_vae_tiny.safetensors"),
    ("input", "secret.gguf"),
    ("", TINY_WAN_GGUF),
])
def test_inspect_refuses_other_folders(server, secret, folder, name):
    status, body = call(server, inspect_path(folder, name))
    assert status == 400 and "is not one of" in body["error"], body


def test_inspect_refuses_other_files(server, tiny_models, gguf):
    status, body = call(server, inspect_path("diffusion_models", tiny_models["wan_i2v"].name))
    assert status == 400 and "not a .gguf" in body["error"], body
    status, body = call(server, inspect_path("diffusion_models", "no-such-model.gguf"))
    assert status == 404 and "no-such-model.gguf" in body["error"], body
    status, body = call(server, inspect_path("diffusion_models", ""))
    assert status == 400, body


LINT_TEXTS = [
    "1girl, blonde hair, blue eyes, masterpiece, she waves her hand",
    "She waves her hand and turns her head, the camera slowly pushes in",
    "the camera pans left, the camera pans right, she jumps, runs, dances and sings",
    "",
    "她的长发随风飘动, she blinks",
]


@pytest.mark.parametrize("text", LINT_TEXTS)
def test_lint_route_equals_lint_prompt(server, text):
    status, body = call(server, "/twostage_i2v/lint", {"text": text})
    assert status == 200, body
    assert body == {"prompt": text, "warnings": prompt_lint.lint_prompt(text)}


def test_lint_route_composes_camera_and_pace_like_the_node(server):
    camera = [c for c in wan_prompts.CAMERA_PRESETS if c != wan_prompts.DEFAULT_CAMERA][0]
    pace = [p for p in wan_prompts.PACE_PRESETS if p != wan_prompts.DEFAULT_PACE][0]
    text = "she waves, the camera pans left"
    status, body = call(server, "/api/twostage_i2v/lint", {"text": text, "camera": camera, "pace": pace})
    composed = wan_prompts.compose_prompt(text, camera, pace)
    assert status == 200 and composed != text
    assert body == {"prompt": composed, "warnings": prompt_lint.lint_prompt(composed)}


@pytest.mark.parametrize("raw", [b"not json", b'{"prompt": "x"}', b'{"text": 3}', b'["text"]',
                                 b'{"text": "x", "camera": "no such preset"}'])
def test_lint_route_refuses_bad_bodies(server, raw):
    status, body = call(server, "/twostage_i2v/lint", raw=raw)
    assert status == 400 and body["error"], body


def test_bridge_plan_route_equals_plan_details(server):
    q = {"w": 640, "h": 300, "target": "480x832 (480p portrait)", "fit": "pad", "orientation": "as target",
         "anchor": "top", "length_from": "seconds", "frames": 81, "seconds": 3.0, "fps": 16}
    status, body = call(server, "/twostage_i2v/bridge_plan?" + urllib.parse.urlencode(q))
    assert status == 200, body
    length, note = geometry.clip_length("seconds", 81, 3.0, 16.0)
    expected = {**geometry.plan_details(640, 300, 480, 832, "pad", "as target", "top"),
                "source_assumed": False, "length": length, "length_note": note}
    assert body == json.loads(json.dumps(expected))
    assert {k: body[k] for k in geometry.PLAN_KEYS} == json.loads(json.dumps(geometry.plan(640, 300, 480, 832, "pad", "as target", "top")))


def test_bridge_plan_route_assumes_the_stage_plan_size_before_a_run(server):
    q = {"target": "custom", "width": 1024, "height": 576, "fit": "crop"}
    status, body = call(server, "/twostage_i2v/bridge_plan?" + urllib.parse.urlencode(q))
    assert status == 200, body
    w, h = geometry.stage1_size(1024, 576)
    assert body == json.loads(json.dumps({**geometry.plan_details(w, h, 1024, 576, "crop"), "source_assumed": True}))


@pytest.mark.parametrize("query", ["fit=squash", "w=abc&h=10", "target=999x999", "w=0&h=0", "frames=x&length_from=frames"])
def test_bridge_plan_route_refuses_bad_values(server, query):
    status, body = call(server, "/twostage_i2v/bridge_plan?" + query)
    assert status == 400 and body["error"], body


def test_bridge_plan_route_gives_the_node_text_for_the_widgets(server):
    q = {"w": 320, "h": 128, "target": "832x480 (480p)", "fit": "pad", "length_from": "frames", "frames": 50,
         "resample": "bicubic", "pad_style": "color", "pad_color": "#808080"}
    status, body = call(server, "/twostage_i2v/bridge_plan?" + urllib.parse.urlencode(q))
    assert status == 200, body
    details = geometry.plan_details(320, 128, 832, 480, "pad")
    length, note = geometry.clip_length("frames", 50, 5.0, 16.0)
    # What the Stage Bridge node itself reports after running with these widgets.
    assert body["text"] == geometry.describe(details, "bicubic", "color", "#808080", note)
    assert body["length"] == length == 49 and "UPSCALED" in body["text"]


@pytest.mark.parametrize("query", ["resample=nearest", "resample=lanczos&pad_style=mirror",
                                   "resample=lanczos&pad_color=red%3Cb%3E"])
def test_bridge_plan_route_refuses_bad_describe_widgets(server, query):
    status, body = call(server, "/twostage_i2v/bridge_plan?" + query)
    assert status == 400 and body["error"], body
