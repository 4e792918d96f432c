"""The frontend extension (web/twostage_i2v.js) and the shipped workflows in the real
frontend: headless Chromium on the ComfyUI frontend served by the real server with
this package (issues 7 and 8).

One browser and one page for the module; each test starts from an empty graph of
the current tab and leaves a screenshot in artifacts/screenshots/<test>.png.
The static checks of the script at the top need no browser.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from twostage_i2v.bridge import geometry
from twostage_i2v.prompt import lint as prompt_lint, wan_prompts
from twostage_i2v.models.summary import summarize_file

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "web" / "twostage_i2v.js"
WORKFLOWS = sorted((REPO / "workflows").glob("*.json"))
BROWSER = [pytest.mark.server, pytest.mark.browser]

# Issue 7's four workflows and issue 19's Wan 2.2 and 4-step ones, by file name.
SHIPPED = {"two_stage_i2v_480p.json", "two_stage_i2v_480p_portrait.json", "i2v_from_image_480p.json",
           "two_stage_i2v_720p.json", "two_stage_wan22_i2v_a14b_480p.json", "two_stage_wan22_ti2v_5b_720p.json",
           "two_stage_i2v_480p_4step.json", "two_stage_wan22_i2v_a14b_480p_4step.json"}
# Widget values the frontend may replace on load (model names missing on this server).
LOADER_TYPES = {"TwoStageI2V_WanI2VLoaderGGUF", "TwoStageI2V_TextEncoderGGUF"}

# What a creator pastes from a stage-1 SDXL prompt: tags the lint flags as appearance.
APPEARANCE_HEAVY = "1girl, long blonde hair, blue eyes, red dress, masterpiece, best quality, she waves her hand"
BRIDGE_SOURCE = ("twostage_bridge_source.png", (320, 128), (200, 60, 20))  # wider than 832x480: crop cuts the sides


# ---------------------------------------------------------------- the script itself (no browser)


def _js() -> str:
    return SCRIPT.read_text(encoding="utf-8")


@pytest.mark.core
def test_script_renders_no_html_and_fetches_nothing_itself():
    js = _js()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "DOMParser",
                 "createContextualFragment", "eval(", "new Function", "srcdoc"):
        assert sink not in js, f"{SCRIPT.name} uses {sink}: user text must be set with textContent"
    for call in ("fetch(", "XMLHttpRequest", "WebSocket", "EventSource", "sendBeacon", "import(", ".src ="):
        assert call not in js.replace("fetchApi(", ""), f"{SCRIPT.name} makes its own request with {call}"
    assert not re.search(r"""["'`](?:https?:)?//""", js), f"{SCRIPT.name} names a URL outside the server"
    assert "textContent" in js


@pytest.mark.core
def test_script_calls_only_the_package_routes():
    routes_py = (REPO / "nodes" / "routes.py").read_text(encoding="utf-8")
    served = set(re.findall(r'PREFIX \+ "(/\w+)"', routes_py))
    prefix = re.search(r'^PREFIX = "(/\w+)"', routes_py, re.M).group(1)
    called = set(re.findall(r"[\"'`](/twostage_i2v/\w+)", _js()))
    assert served == {"/inspect", "/lint", "/bridge_plan"}
    assert called == {prefix + r for r in served}, "the script and nodes/routes.py disagree on the routes"


@pytest.mark.core
def test_script_holds_no_copy_of_the_lint_rules():
    # One source of truth: the words and messages live in rules.json and reach
    # the node through the /twostage_i2v/lint route, never through a copy in the script.
    rules = json.loads((REPO / "twostage_i2v" / "prompt" / "rules.json").read_text(encoding="utf-8"))
    js = _js().lower()
    terms = {t for g in rules["appearance"] for t in g.get("terms", [])}
    terms |= {t for v in rules["vocabularies"].values() if isinstance(v, list) for t in v}
    multiword = sorted(t for t in terms if " " in t)
    assert len(multiword) > 20  # the check below has something to find
    assert [t for t in multiword if t.lower() in js] == []
    messages = [g["message"] for g in rules["appearance"]] + [rules["empty"]["message"], rules["actions"]["message"]]
    fragments = [f for m in messages for f in re.split(r"\{\w+\}", m) if len(f.strip()) >= 15]
    assert fragments and [f for f in fragments if f.lower() in js] == []


@pytest.mark.core
def test_web_directory_is_declared_once():
    # Declared twice (WEB_DIRECTORY and [tool.comfy] web), ComfyUI registers the script twice.
    assert re.search(r'^WEB_DIRECTORY = "\./web"$', (REPO / "__init__.py").read_text(), re.M)
    assert not re.search(r"^\s*web\s*=", (REPO / "pyproject.toml").read_text(), re.M)


@pytest.mark.core
def test_the_workflows_are_shipped():
    assert {p.name for p in WORKFLOWS} == SHIPPED  # the browser test below loads each


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tiny_gguf(tiny_models) -> Path:
    return tiny_models["wan_i2v_q4_k_m"]


@pytest.fixture(scope="module")
def bridge_source(comfy_base):
    from PIL import Image

    name, size, colour = BRIDGE_SOURCE
    Image.new("RGB", size, colour).save(Path(comfy_base) / "input" / name)
    return BRIDGE_SOURCE


@pytest.fixture(scope="module")
def browser_installed():
    """Fails at once, with the install hint, when Chromium or playwright is missing."""
    from harness.browser import require_browser

    require_browser()


@pytest.fixture(scope="module")
def ui(browser_installed, server, artifacts, tiny_gguf, bridge_source):
    """The frontend in one headless Chromium page; model files and the input image are
    in place before it loads, so its node definitions list them."""
    from harness.browser import Browser

    with Browser(artifacts) as browser:
        yield browser.open(server.url)


@pytest.fixture
def page(ui, request):
    """The shared page with an empty graph; a screenshot of how the test left it, and
    no script error from this package's extension."""
    ui.clear()
    seen = len(ui.errors)
    yield ui
    ui.screenshot(request.node.name)
    ours = [e for e in ui.errors[seen:] if "twostage" in e.lower()]
    assert not ours, f"errors in {SCRIPT.name}: {ours}"


def wait_text(page, node_id, panel: str, expected: list[str], timeout: float = 30_000) -> None:
    """Wait until the panel shows exactly ``expected`` (one row each); on a timeout, compare."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_panel(node_id, panel, f"text === {json.dumps(chr(10).join(expected))}", timeout=timeout)
    except PlaywrightTimeout:
        assert (page.panel_text(node_id, panel) or "").split("\n") == expected


def http_json(server, path: str):
    try:
        with urllib.request.urlopen(server.url + path, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def lint_rows(text: str) -> list[str]:
    """What the Motion Prompt panel shows for ``text``, from the Python lint (node defaults)."""
    warnings = prompt_lint.lint_prompt(text)
    if not warnings:
        return ["lint: clean, no warnings"]
    n = len(warnings)
    return [f"lint: {n} warning{'' if n == 1 else 's'}"] + [f"• {w['category']}: {w['message']}" for w in warnings]


# ---------------------------------------------------------------- Motion Prompt: live lint


@pytest.mark.server
@pytest.mark.browser
def test_motion_prompt_shows_lint_warnings_as_the_user_types(page):
    node = page.add_node("TwoStageI2V_MotionPrompt", (60, 40))
    composed = wan_prompts.compose_prompt("", wan_prompts.DEFAULT_CAMERA, wan_prompts.DEFAULT_PACE)
    wait_text(page, node, "twostage_lint", lint_rows(composed))  # a new node: the empty-prompt warning

    box = page.widget_element(node, "motion")
    box.click()
    page.page.keyboard.type(APPEARANCE_HEAVY, delay=5)
    composed = wan_prompts.compose_prompt(APPEARANCE_HEAVY, wan_prompts.DEFAULT_CAMERA, wan_prompts.DEFAULT_PACE)
    expected = lint_rows(composed)
    assert len(expected) >= 5 and all(r.startswith("• appearance: ") for r in expected[1:])
    wait_text(page, node, "twostage_lint", expected)
    # On the node: the panel is shown under the prompt box, in the node's column.
    panel = page.widget_element(node, "twostage_lint")
    assert panel.is_visible()
    p, b = panel.bounding_box(), box.bounding_box()
    assert p["y"] >= b["y"] + b["height"] - 1 and abs(p["x"] - b["x"]) < 2 and p["height"] > 40, (p, b)
    assert page.eval("(el) => getComputedStyle(el.querySelector('.ts-warn')).color", panel) == "rgb(240, 180, 76)"

    # A camera preset is appended to the text the lint sees, as the node does.
    camera = next(c for c in wan_prompts.CAMERA_PRESETS if c != wan_prompts.DEFAULT_CAMERA)
    page.set_widget(node, "camera", camera)
    wait_text(page, node, "twostage_lint", lint_rows(
        wan_prompts.compose_prompt(APPEARANCE_HEAVY, camera, wan_prompts.DEFAULT_PACE)))
    page.set_widget(node, "lint", "off")
    wait_text(page, node, "twostage_lint", ["lint: off"])
    page.set_widget(node, "lint", "warn")

    # Motion only: no warning.
    page.set_widget(node, "camera", wan_prompts.DEFAULT_CAMERA)
    box.fill("")
    box.click()
    page.page.keyboard.type("her hair sways in the breeze, she blinks slowly", delay=5)
    motion = wan_prompts.compose_prompt("her hair sways in the breeze, she blinks slowly",
                                        wan_prompts.DEFAULT_CAMERA, wan_prompts.DEFAULT_PACE)
    assert lint_rows(motion) == ["lint: clean, no warnings"]
    wait_text(page, node, "twostage_lint", lint_rows(motion))
    # Back to the tag soup for the screenshot.
    box.fill(APPEARANCE_HEAVY)
    wait_text(page, node, "twostage_lint", expected)


# ---------------------------------------------------------------- GGUF loaders: file summary


def _summary_rows_match(text: str, s: dict) -> None:
    rows = text.split("\n")
    assert rows[0] == f"{s['kind']}: {s['description']}"
    mix = re.fullmatch(r"quant mix \(by bytes\): (.*)", rows[1]).group(1).split(", ")
    total = sum(t["bytes"] for t in s["tensor_types"].values())
    assert mix == [f"{name} {100 * t['bytes'] / total:.0f}%" for name, t in s["tensor_types"].items()]
    m = re.fullmatch(r"([\d.]+) ?([kMB]?) parameters · ([\d.]+) (GiB|MiB|KiB|B) · ([\d.]+) bits/weight", rows[2])
    assert m, rows[2]
    params = float(m[1]) * {"": 1, "k": 1e3, "M": 1e6, "B": 1e9}[m[2]]
    size = float(m[3]) * {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}[m[4]]
    assert abs(params - s["parameters"]) <= 0.005 * {"": 1, "k": 1e3, "M": 1e6, "B": 1e9}[m[2]]
    assert abs(size - s["file_size"]) <= 0.005 * {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}[m[4]]
    assert float(m[5]) == s["bits_per_weight"]
    assert len(rows) == 3


@pytest.mark.server
@pytest.mark.browser
@pytest.mark.parametrize("node_type,widget,model", [
    ("TwoStageI2V_WanI2VLoaderGGUF", "unet_name", "wan_gguf"),
    ("TwoStageI2V_TextEncoderGGUF", "clip_name", "umt5_q8_0"),
])
def test_gguf_loader_shows_the_file_summary(page, tiny_gguf, tiny_models, node_type, widget, model):
    path = tiny_gguf if model == "wan_gguf" else tiny_models[model]
    node = page.add_node(node_type, (60, 40))
    options = page.eval("([id, name]) => app.graph.getNodeById(id).widgets.find((w) => w.name === name).options.values",
                        [node, widget])
    assert path.name in options  # the server lists the small GGUF in the loader's combo
    page.set_widget(node, widget, path.name)
    page.wait_panel(node, "twostage_gguf", f"text.startsWith({json.dumps(summarize_file(path)['kind'] + ':')})")
    _summary_rows_match(page.panel_text(node, "twostage_gguf"), summarize_file(path))
    assert page.widget_element(node, "twostage_gguf").is_visible()


@pytest.mark.server
@pytest.mark.browser
def test_gguf_loader_shows_file_names_as_text(server, page):
    # A shared workflow chooses the file name: the route's error names it, and the
    # panel must show it literally instead of building markup from it.
    name = '<img src=x onerror="window.__twostageXSS=1">.gguf'
    node = page.add_node("TwoStageI2V_WanI2VLoaderGGUF", (60, 40))
    page.set_widget(node, "unet_name", name)
    status, body = http_json(server, "/twostage_i2v/inspect?" + urllib.parse.urlencode(
        {"folder": "diffusion_models", "file": name}))
    assert status == 404 and name in body["error"]
    wait_text(page, node, "twostage_gguf", [body["error"]])
    panel = page.widget_element(node, "twostage_gguf")
    assert page.eval("(el) => el.querySelectorAll('img').length", panel) == 0
    assert page.eval("() => window.__twostageXSS === undefined")


# ---------------------------------------------------------------- Stage Bridge: plan and preview


def planned_rows(target: str, fit: str, frames: int, source=None) -> list[str]:
    """The panel before a run (source None: the Stage Plan size is assumed) or after one."""
    tw, th = geometry.target_size(target, 832, 480)
    sw, sh = source or geometry.stage1_size(tw, th)
    p = geometry.plan_details(sw, sh, tw, th, fit)
    length, note = geometry.clip_length("frames", frames, 5.0, 16.0)
    src = f"from the last {sw}x{sh} image" if source else f"if stage 1 gives {sw}x{sh}"
    text = geometry.describe(p, "lanczos", "color", "#000000", note)
    return [f"planned: Wan frame {p['width']}x{p['height']}, {length} frames ({src})"] + text.split("\n")[1:]


@pytest.mark.server
@pytest.mark.browser
def test_stage_bridge_shows_the_planned_size(page):
    node = page.add_node("TwoStageI2V_StageBridge", (60, 40))
    rows = planned_rows("832x480 (480p)", "crop", 81)
    assert rows[0].startswith("planned: Wan frame 832x480, 81 frames") and not any("UPSCALED" in r for r in rows)
    wait_text(page, node, "twostage_bridge", rows)
    page.set_widget(node, "target", "480x832 (480p portrait)")
    page.set_widget(node, "fit", "pad")
    page.set_widget(node, "frames", 50)  # snapped to 4n+1 by the plan
    wait_text(page, node, "twostage_bridge", planned_rows("480x832 (480p portrait)", "pad", 50))
    page.set_widget(node, "target", "1280x720 (720p)")
    wait_text(page, node, "twostage_bridge", planned_rows("1280x720 (720p)", "pad", 50))
    page.set_widget(node, "pad_color", "not a colour")
    page.wait_panel(node, "twostage_bridge", "text.includes('is not a hex colour')")
    page.set_widget(node, "pad_color", "#000000")
    wait_text(page, node, "twostage_bridge", planned_rows("1280x720 (720p)", "pad", 50))


def _pixel(page, panel, x: int, y: int) -> list[int]:
    return page.eval(
        "([el, x, y]) => [...el.querySelector('canvas').getContext('2d').getImageData(x, y, 1, 1).data].slice(0, 3)",
        [panel, x, y],
    )


def _close(rgb, expected, tol: int = 4) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(rgb, expected))


@pytest.mark.server
@pytest.mark.browser
@pytest.mark.parametrize("fit", ["crop", "pad"])
def test_stage_bridge_shows_the_source_with_its_box_after_a_run(page, bridge_source, fit):
    name, (sw, sh), colour = bridge_source
    load = page.add_node("LoadImage", (40, 40))
    node = page.add_node("TwoStageI2V_StageBridge", (400, 40))
    preview = page.add_node("PreviewImage", (860, 40))
    page.set_widget(load, "image", name)
    page.connect(load, 0, node, 0)
    page.connect(node, 0, preview, 0)
    page.set_widget(node, "fit", fit)
    wait_text(page, node, "twostage_bridge", planned_rows("832x480 (480p)", fit, 81))  # no plan left in flight
    page.eval("() => app.queuePrompt(0, 1)")

    details = geometry.plan_details(sw, sh, 832, 480, fit)
    text = geometry.describe(details, "lanczos", "color", "#000000", geometry.clip_length("frames", 81, 5.0, 16.0)[1], 1, 3)
    heading = f"ran: Wan frame 832x480, 81 frames from {sw}x{sh}"
    wait_text(page, node, "twostage_bridge", [heading] + text.split("\n")[1:], timeout=120_000)
    panel = page.widget_element(node, "twostage_bridge")
    page.page.wait_for_function("(el) => el.querySelector('canvas')?.dataset.source === 'image'", arg=panel)

    # The thumbnail, 150 px high: the source with the kept region dimmed around (crop),
    # or the Wan frame with the source in its content box (pad); the box is outlined
    # in amber when the bridge upscales (it does here: 128 px high into 480).
    assert details["upscaled"]
    stroke = (240, 180, 76)
    if fit == "crop":
        x, y, w, h = details["crop"]
        k = 150 / sh
        size = [round(sw * k), 150]
        outside = [round(c * 0.45) for c in colour]
        assert x > 4  # the crop cuts the sides: there is a dimmed strip to sample
        samples = {(2, 75): outside, (round(sw * k) - 3, 75): outside}
    else:
        x, y, w, h = details["content"]
        k = 150 / details["height"]
        size = [round(details["width"] * k), 150]
        assert y > 4  # letterbox bands above and below
        samples = {(size[0] // 2, 2): (17, 17, 17), (size[0] // 2, 147): (17, 17, 17)}
    assert page.eval("(el) => [el.querySelector('canvas').width, el.querySelector('canvas').height]", panel) == size
    samples[(round((x + w / 2) * k), round((y + h / 2) * k))] = colour  # inside the box: the source itself
    samples[(int(x * k + 1), round((y + h / 2) * k))] = stroke  # the box's left edge
    samples[(round((x + w / 2) * k), int(y * k + 1))] = stroke  # its top edge
    got = {xy: _pixel(page, panel, *xy) for xy in samples}
    assert all(_close(got[xy], want) for xy, want in samples.items()), (got, samples)

    # Edited after the run: the plan is made for the image that came in, and drawn on it.
    other = "pad" if fit == "crop" else "crop"
    page.set_widget(node, "fit", other)
    wait_text(page, node, "twostage_bridge", planned_rows("832x480 (480p)", other, 81, source=(sw, sh)))
    size = [260, 150] if other == "pad" else [round(sw * 150 / sh), 150]
    assert page.eval("(el) => [el.querySelector('canvas').width, el.querySelector('canvas').height]", panel) == size
    page.set_widget(node, "fit", fit)  # as it ran, for the screenshot
    wait_text(page, node, "twostage_bridge", planned_rows("832x480 (480p)", fit, 81, source=(sw, sh)))


# ---------------------------------------------------------------- Wan 2.2 Expert Split: the switch after a run


@pytest.mark.server
@pytest.mark.browser
def test_expert_split_shows_the_switch_after_a_run(page, comfy, tiny_models):
    unet = page.add_node("UNETLoader", (40, 40))
    shift = page.add_node("ModelSamplingSD3", (420, 40))
    split = page.add_node("TwoStageI2V_WanExpertSplit", (780, 40))
    show = page.add_node("PreviewAny", (1220, 40))
    page.set_widget(unet, "unet_name", tiny_models["wan22_i2v_high"].name)
    page.set_widget(shift, "shift", 5.0)
    page.set_widget(split, "steps", 20)
    page.connect(unet, 0, shift, 0)
    page.connect(shift, 0, split, 0)
    page.connect(split, 0, show, 0)
    wait_text(page, split, "twostage_split", ["switch step: computed from the model's schedule when the workflow runs"])
    page.eval("() => app.queuePrompt(0, 1)")
    # What the node reports for the same model and settings, run in this process.
    model = comfy.nodes.UNETLoader().load_unet(tiny_models["wan22_i2v_high"].name, "default")[0]
    model = comfy.node_class("ModelSamplingSD3")().patch(model, 5.0)[0]
    report = comfy.node_class("TwoStageI2V_WanExpertSplit").execute(
        model, 20, "euler", "simple", "0.900 (I2V A14B)", 0.9).ui["text"][0]
    assert report.startswith("switch at step 8 of 20")
    wait_text(page, split, "twostage_split", report.split("\n"), timeout=120_000)


# ---------------------------------------------------------------- workflows through the file input


def _assert_same_graph(page, loaded: dict, workflow: dict) -> None:
    nodes = workflow["nodes"]
    assert loaded == {"missing": [], "count": len(nodes)}  # what the frontend itself reported
    g = page.graph_summary()
    assert g["unknown"] == []
    assert Counter(g["types"]) == Counter(n["type"] for n in nodes)
    assert g["links"] == len(workflow["links"])
    # This package's nodes keep every widget value (the panels are never saved).
    saved = page.serialized_nodes()
    for n in nodes:
        if n["type"].startswith("TwoStageI2V_") and n["type"] not in LOADER_TYPES:
            assert saved[str(n["id"])] == {"type": n["type"], "widgets_values": n["widgets_values"]}, n["type"]


@pytest.mark.server
@pytest.mark.browser
@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_shipped_workflow_loads_through_the_file_input(page, path):
    workflow = json.loads(path.read_text(encoding="utf-8"))
    _assert_same_graph(page, page.open_file(path), workflow)
    page.fit_view()


@pytest.mark.server
@pytest.mark.browser
def test_a_missing_node_type_is_reported(page, tmp_path):
    # The check above can fail: a workflow naming a node type nobody registered.
    workflow = json.loads(WORKFLOWS[0].read_text(encoding="utf-8"))
    workflow["nodes"][0]["type"] = "TwoStageI2V_NoSuchNode"
    path = tmp_path / "missing_node.json"
    path.write_text(json.dumps(workflow), encoding="utf-8")
    loaded = page.open_file(path)
    assert loaded == {"missing": ["TwoStageI2V_NoSuchNode"], "count": len(workflow["nodes"])}
    assert page.graph_summary()["unknown"] == ["TwoStageI2V_NoSuchNode"]


# ---------------------------------------------------------------- no network


@pytest.mark.server
@pytest.mark.browser
def test_panels_fetch_only_from_this_server(page, tiny_gguf):
    first = len(page.requests)
    prompt = page.add_node("TwoStageI2V_MotionPrompt", (40, 40))
    loader = page.add_node("TwoStageI2V_WanI2VLoaderGGUF", (500, 40))
    bridge_node = page.add_node("TwoStageI2V_StageBridge", (900, 40))
    page.set_widget(loader, "unet_name", tiny_gguf.name)
    page.wait_panel(prompt, "twostage_lint", "text.startsWith('lint:')")
    page.wait_panel(loader, "twostage_gguf", "text.startsWith('wan-i2v:')")
    page.wait_panel(bridge_node, "twostage_bridge", "text.startsWith('planned:')")
    ours = [r["url"] for r in page.requests[first:] if any(s.endswith("/" + SCRIPT.name) for s in r["scripts"])]
    paths = {urlsplit(u).path for u in ours}
    assert paths == {"/api/twostage_i2v/lint", "/api/twostage_i2v/inspect", "/api/twostage_i2v/bridge_plan"}, ours
    assert all(page.same_origin(u) for u in ours), ours


# ---------------------------------------------------------------- the produced video (slow: runs workflow 1)


@pytest.mark.server
@pytest.mark.browser
@pytest.mark.parametrize("kind", ["mp4", "png"])
def test_produced_video_loads_its_workflow_back(page, workflow1_run, kind):
    path = getattr(workflow1_run, kind)
    assert path.suffix == "." + kind
    _assert_same_graph(page, page.open_file(path), workflow1_run.workflow)
    page.fit_view()
