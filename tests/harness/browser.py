"""Headless Chromium (Debian's /usr/bin/chromium, driven by Python playwright) on
the real ComfyUI frontend. Install both with scripts/setup-browser.sh; nothing
here downloads a browser.

``Browser`` is one Chromium with a fresh profile; ``ComfyPage`` wraps one page of
the frontend with the few things the tests do: add nodes, load a file through
the frontend's own "Open" file input, read the graph and this package's panels,
list the requests a script made, take screenshots into the artifacts folder.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM = Path(os.environ.get("TWOSTAGE_CHROMIUM", "/usr/bin/chromium"))
FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--no-first-run", "--disable-sync", "--disable-dev-shm-usage",
]
VIEWPORT = {"width": 1600, "height": 1000}
# A fresh user would get the template browser and, for workflows naming model files
# that the test server lacks, the missing-models dialog over the graph; the minimap
# covers a corner of it, and below a zoom threshold nodes are drawn without text.
# (Missing node types are still reported by the frontend: see LOAD_PROBE.)
SETTINGS = {
    "Comfy.TutorialCompleted": True,
    "Comfy.Workflow.ShowMissingModelsWarning": False,
    "Comfy.Minimap.Visible": False,
    "LiteGraph.Canvas.MinFontSizeForLOD": 0,
}

# The frontend calls every extension's afterConfigureGraph(missingNodeTypes) at the
# end of loadGraphData, the function its file input, drag-and-drop and paste all
# end in: the probe records what the frontend itself found missing.
LOAD_PROBE = """() => {
    if (window.__twostageLoads) return;
    window.__twostageLoads = [];
    app.registerExtension({
        name: 'TwoStageI2V.TestLoadProbe',
        async afterConfigureGraph(missing) {
            window.__twostageLoads.push({
                missing: (missing ?? []).map((m) => (typeof m === 'string' ? m : m.type)),
                count: app.graph.nodes.length,
            });
        },
    });
}"""


def require_browser():
    """The playwright module, or a failure that says how to install what is missing."""
    if not CHROMIUM.is_file():
        pytest.fail(f"no Chromium at {CHROMIUM}: run scripts/setup-browser.sh (or set TWOSTAGE_CHROMIUM)")
    try:
        from playwright import sync_api
    except ImportError:
        pytest.fail("Python playwright is not installed in .venv: run scripts/setup-browser.sh")
    return sync_api


def safe_name(name: str) -> str:
    """A test id as a file name: test_x[a.json] -> test_x-a.json."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")


class Browser:
    """One Chromium with a fresh profile for the test session."""

    def __init__(self, artifacts: Path):
        self.artifacts = Path(artifacts)
        self._pw = self._context = None
        self._profile = None

    def __enter__(self) -> "Browser":
        sync_api = require_browser()
        self._profile = tempfile.mkdtemp(prefix="twostage-chromium-")
        self._pw = sync_api.sync_playwright().start()
        try:
            self._context = self._pw.chromium.launch_persistent_context(
                self._profile, executable_path=str(CHROMIUM), headless=True, args=FLAGS, viewport=VIEWPORT,
            )
        except Exception:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        try:
            if self._context is not None:
                self._context.close()
        finally:
            if self._pw is not None:
                self._pw.stop()
            if self._profile:
                shutil.rmtree(self._profile, ignore_errors=True)

    def open(self, url: str) -> "ComfyPage":
        page = self._context.new_page()
        return ComfyPage(page, self._context.new_cdp_session(page), url, self.artifacts).load()


class ComfyPage:
    def __init__(self, page, cdp, url: str, artifacts: Path):
        self.page, self.url, self.artifacts = page, url.rstrip("/"), Path(artifacts)
        self.errors: list[str] = []
        self.requests: list[dict] = []  # {"url", "scripts": script URLs on the initiator's stack}
        page.on("pageerror", lambda e: self.errors.append(f"{e}\n{getattr(e, 'stack', '')}"))
        page.set_default_timeout(60_000)
        # The DevTools protocol names the scripts on the stack that made each request
        # (async parents included), which is what tells this package's requests apart.
        cdp.on("Network.requestWillBeSent", self._record)
        cdp.send("Network.enable")

    def _record(self, event: dict) -> None:
        scripts, stack = [], event.get("initiator", {}).get("stack")
        while stack:
            scripts += [f["url"] for f in stack.get("callFrames", [])]
            stack = stack.get("parent")
        self.requests.append({"url": event["request"]["url"], "scripts": scripts})

    def load(self) -> "ComfyPage":
        self.page.request.post(f"{self.url}/api/settings", data=SETTINGS)
        self.page.goto(self.url + "/")
        # The app is ready when the node definitions are registered and the canvas has a graph.
        self.page.wait_for_function(
            "() => window.LiteGraph?.registered_node_types?.['KSampler'] && window.app?.canvas?.graph",
            timeout=120_000,
        )
        self.eval(LOAD_PROBE)
        self.page.keyboard.press("Escape")
        return self

    def eval(self, script: str, arg=None):
        return self.page.evaluate(script, arg)

    def screenshot(self, name: str) -> Path:
        path = self.artifacts / "screenshots" / f"{safe_name(name)}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path))
        return path

    def same_origin(self, url: str) -> bool:
        return urlsplit(url)[:2] == urlsplit(self.url)[:2]

    # ---------------------------------------------------------------- graph

    def clear(self) -> None:
        self.page.keyboard.press("Escape")
        self.eval("() => { app.graph.clear(); app.canvas.ds.scale = 1; app.canvas.ds.offset[0] = 60; app.canvas.ds.offset[1] = 90; app.canvas.setDirty(true, true); }")

    def add_node(self, node_type: str, pos=(100, 100)) -> str:
        """Add a node as the node library does; returns its id."""
        return self.eval(
            """([type, pos]) => {
                const node = LiteGraph.createNode(type);
                node.pos = pos;
                app.graph.add(node);
                app.canvas.setDirty(true, true);
                return node.id;
            }""",
            [node_type, list(pos)],
        )

    def connect(self, src, src_slot: int, dst, dst_slot: int) -> None:
        self.eval(
            "([a, i, b, j]) => app.graph.getNodeById(a).connect(i, app.graph.getNodeById(b), j)",
            [src, src_slot, dst, dst_slot],
        )

    def set_widget(self, node_id, name: str, value) -> None:
        """Set a widget as a user's choice does: value, then the widget's callback."""
        self.eval(
            """([id, name, value]) => {
                const node = app.graph.getNodeById(id);
                const w = node.widgets.find((w) => w.name === name);
                w.value = value;
                w.callback?.(value, app.canvas, node);
                app.canvas.setDirty(true, true);
            }""",
            [node_id, name, value],
        )

    def widget_element(self, node_id, name: str):
        """The DOM element of a node's DOM widget (a textarea, a panel)."""
        return self.page.evaluate_handle(
            "([id, name]) => app.graph.getNodeById(id).widgets.find((w) => w.name === name).element",
            [node_id, name],
        ).as_element()

    def fit_view(self) -> None:
        """Zoom to show the whole graph (the frontend's "Zoom to fit")."""
        self.eval("() => { app.canvas.deselectAll?.(); app.canvas.fitViewToSelectionAnimated(); }")
        self.page.wait_for_timeout(800)  # the zoom is animated

    def open_file(self, path: Path) -> dict:
        """Load a workflow file (JSON, PNG, MP4, ...) through the frontend's own "Open"
        file input; returns what the frontend reported: missing node types and node count."""
        self.page.keyboard.press("Escape")
        before = self.eval("() => window.__twostageLoads.length")
        self.page.set_input_files("#comfy-file-input", str(path))
        self.page.wait_for_function("(n) => window.__twostageLoads.length > n", arg=before)
        self.page.wait_for_timeout(300)  # panels and the tab settle after the graph is configured
        return self.eval("() => window.__twostageLoads.at(-1)")

    def graph_summary(self) -> dict:
        """The graph on the canvas: node count and types, link count, types the frontend does not know."""
        return self.eval(
            """() => {
                const nodes = app.graph.nodes;
                const known = LiteGraph.registered_node_types;
                const links = app.graph.links;
                return {
                    count: nodes.length,
                    types: nodes.map((n) => n.type),
                    links: links instanceof Map ? links.size : Object.keys(links).length,
                    unknown: nodes.filter((n) => !(n.type in known)).map((n) => n.type),
                };
            }"""
        )

    def serialized_nodes(self) -> dict:
        """id -> {type, widgets_values} as the frontend would save the graph now."""
        return self.eval(
            "() => Object.fromEntries(app.graph.serialize().nodes.map((n) => [String(n.id), {type: n.type, widgets_values: n.widgets_values ?? null}]))"
        )

    # ---------------------------------------------------------------- this package's panels

    def panel_text(self, node_id, panel: str) -> str | None:
        """Text of one of this package's panels (web/twostage_i2v.js) on a node."""
        return self.eval(
            """([id, name]) => {
                const w = app.graph.getNodeById(id)?.widgets?.find((w) => w.name === name);
                return w?.element?.innerText ?? null;
            }""",
            [node_id, panel],
        )

    def wait_panel(self, node_id, panel: str, predicate_js: str, timeout: float = 30_000) -> str:
        """Wait until the panel's text satisfies ``predicate_js`` (a JS expression of ``text``)."""
        self.page.wait_for_function(
            f"""([id, name]) => {{
                const w = app.graph.getNodeById(id)?.widgets?.find((w) => w.name === name);
                const text = w?.element?.innerText ?? '';
                return {predicate_js};
            }}""",
            arg=[node_id, panel],
            timeout=timeout,
        )
        return self.panel_text(node_id, panel)
