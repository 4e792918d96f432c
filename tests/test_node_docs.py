"""Node help pages: ComfyUI's frontend shows ``WEB_DIRECTORY/docs/<node id>.md`` of a custom node in
its node documentation panel, fetched from ``/extensions/<package folder>/docs/<node id>.md`` with
relative images resolved against that folder. Every node the package registers has one, naming each
of its inputs; the pictures exist and are the ones scripts/build-docs-images.py draws."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "web" / "docs"
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


def package_nodes(comfy) -> dict[str, dict]:
    """Node id -> definition (/object_info) for every node this package registered in the running ComfyUI."""
    import importlib

    from twostage_i2v.headless.object_info import object_info_in_process

    ours = {cls.define_schema().node_id for cls in importlib.import_module(f"{comfy.package.__name__}.nodes").all_nodes()}
    info = object_info_in_process(comfy.nodes)
    assert ours == {k for k in info if k.startswith("TwoStageI2V_")}  # all registered, under the package's prefix
    return {k: info[k] for k in ours}


@pytest.mark.comfy
def test_every_registered_node_has_a_help_page_naming_its_inputs(comfy):
    nodes = package_nodes(comfy)
    assert len(nodes) >= 6 and all(k.startswith("TwoStageI2V_") for k in nodes)
    assert sorted(p.stem for p in DOCS.glob("*.md")) == sorted(nodes)  # no page for a node that is gone
    for node_id, definition in nodes.items():
        text = (DOCS / f"{node_id}.md").read_text(encoding="utf-8")
        assert text.startswith(f"# {definition['display_name']}\n"), node_id
        inputs = [*definition["input"].get("required", {}), *definition["input"].get("optional", {})]
        missing = [name for name in inputs if f"`{name}`" not in text]
        assert not missing, f"{node_id}.md does not describe {missing}"


@pytest.mark.core
def test_help_page_pictures_exist_and_are_current():
    referenced = set()
    for page in DOCS.glob("*.md"):
        for ref in IMAGE.findall(page.read_text(encoding="utf-8")):
            assert not ref.startswith(("http:", "https:", "/")), f"{page.name}: {ref} must be a relative path"
            path = DOCS / ref
            assert path.is_file(), f"{page.name} shows {ref}, which is missing"
            with Image.open(path) as img:
                assert img.format == "PNG" and img.width >= 300
            referenced.add(path)
    assert referenced == set((DOCS / "images").glob("*.png"))  # no picture left unused
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "build-docs-images.py"), "--check"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.core
def test_bridge_page_shows_crop_and_pad():
    text = (DOCS / "TwoStageI2V_StageBridge.md").read_text(encoding="utf-8")
    assert "images/bridge_crop.png" in text and "images/bridge_pad.png" in text


@pytest.mark.server
def test_the_server_serves_the_pages_where_the_frontend_looks(server, comfy):
    """The frontend's rule (NodeHelpService): python_module custom_nodes.<folder> -> /extensions/<folder>/docs/."""
    info = server.client.get("/object_info")
    for node_id in package_nodes(comfy):
        module = info[node_id]["python_module"]
        assert module.split(".")[0] == "custom_nodes"
        base = f"{server.url}/extensions/{module.split('.')[1].split('@')[0]}/docs/"
        with urllib.request.urlopen(base + f"{node_id}.md") as resp:
            body = resp.read().decode("utf-8")
        assert body == (DOCS / f"{node_id}.md").read_text(encoding="utf-8")
        for ref in IMAGE.findall(body):
            with urllib.request.urlopen(base + ref) as resp:
                assert resp.read() == (DOCS / ref).read_bytes()
