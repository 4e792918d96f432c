"""extract-workflow on every container ComfyUI writes, and its refusals.

The files are written here with PyAV and Pillow the way ComfyUI writes them
(container tags with use_metadata_tags for MP4/MOV, Matroska tags for WEBM,
PNG text chunks, WEBP EXIF strings). Oracle for the MP4 box parser: PyAV's own
reading of the same file (FFmpeg's parser).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from twostage_i2v.workflow import media_metadata
from twostage_i2v.cli import main
from twostage_i2v.headless.inprocess import REPO_ROOT

pytestmark = pytest.mark.core

WORKFLOW = {"version": 0.4, "nodes": [{"id": 1, "type": "Note", "widgets_values": ["ünïcode ✓ 镜头晃动"]}],
            "links": [], "groups": [], "extra": {}, "last_node_id": 1, "last_link_id": 0}
PROMPT = {"1": {"class_type": "KSampler", "inputs": {"seed": 7, "steps": 2}}}


def write_video(path: Path, fmt: str, codec: str, metadata: dict | None, faststart: bool = True, frames: int = 3):
    options = {"movflags": "use_metadata_tags" + ("+faststart" if faststart else "")} if fmt in ("mp4", "mov") else {}
    with av.open(str(path), mode="w", format=fmt, options=options) as c:
        for k, v in (metadata or {}).items():
            c.metadata[k] = v
        s = c.add_stream(codec, rate=16)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 40, np.uint8), format="rgb24")
            for packet in s.encode(frame):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path


def comfy_tags():
    # As SaveVideo does: every value JSON-encoded.
    return {"workflow": json.dumps(WORKFLOW), "prompt": json.dumps(PROMPT)}


@pytest.mark.parametrize("suffix,fmt,faststart", [
    (".mp4", "mp4", True), (".mp4", "mp4", False), (".mov", "mov", True), (".m4v", "mp4", True)])
def test_isobmff_workflow_and_prompt(tmp_path, suffix, fmt, faststart):
    path = write_video(tmp_path / f"v{suffix}", fmt, "h264", comfy_tags(), faststart)
    found = media_metadata.embedded(path)
    assert found == {"container": "isobmff", "workflow": WORKFLOW, "prompt": PROMPT}
    with av.open(str(path)) as c:  # FFmpeg's reading of the same boxes
        ffmpeg_tags = dict(c.metadata)
    own = media_metadata.isobmff_tags(path)
    assert {k: own[k] for k in ("workflow", "prompt")} == {k: ffmpeg_tags[k] for k in ("workflow", "prompt")}


def test_webm_tags_any_case(tmp_path):
    path = write_video(tmp_path / "v.webm", "webm", "libvpx", comfy_tags())
    assert media_metadata.extract_workflow(path) == WORKFLOW
    assert media_metadata.extract_prompt(path) == PROMPT


def test_png_text_chunks(tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", json.dumps(PROMPT))
    info.add_itxt("workflow", json.dumps(WORKFLOW, ensure_ascii=False), zip=True)  # compressed iTXt also counts
    path = tmp_path / "f.png"
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    assert media_metadata.embedded(path) == {"container": "png", "workflow": WORKFLOW, "prompt": PROMPT}


@pytest.mark.parametrize("workflow_tag,prompt_tag", [(0x010F, 0x0110), (0x010E, 0x010F)])
def test_webp_exif_strings(tmp_path, workflow_tag, prompt_tag):
    # Current ComfyUI: 0x0110 "prompt:", 0x010F "workflow:"; older ones counted down from 0x010F.
    img = Image.new("RGB", (8, 8))
    exif = img.getexif()
    exif[prompt_tag] = "prompt:" + json.dumps(PROMPT)
    exif[workflow_tag] = "workflow:" + json.dumps(WORKFLOW)
    path = tmp_path / "a.webp"
    img.save(path, exif=exif, lossless=True)
    assert media_metadata.embedded(path) == {"container": "webp", "workflow": WORKFLOW, "prompt": PROMPT}


def test_cli_prints_and_writes(tmp_path, capsys):
    path = write_video(tmp_path / "v.mp4", "mp4", "h264", comfy_tags())
    assert main(["extract-workflow", str(path)]) == 0
    assert json.loads(capsys.readouterr().out) == WORKFLOW
    out = tmp_path / "wf.json"
    assert main(["extract-workflow", str(path), "--out", str(out)]) == 0
    assert json.loads(out.read_text(encoding="utf-8")) == WORKFLOW
    assert capsys.readouterr().out.startswith(f"wrote {out} (1 nodes)")
    assert main(["extract-workflow", str(path), "--prompt"]) == 0
    assert json.loads(capsys.readouterr().out) == PROMPT


def test_cli_out_never_replaces_a_file_without_force(tmp_path, capsys):
    path = write_video(tmp_path / "v.mp4", "mp4", "h264", comfy_tags())
    out = tmp_path / "mine.json"
    out.write_text("the user's own notes", encoding="utf-8")
    assert main(["extract-workflow", str(path), "--out", str(out)]) == 1
    assert capsys.readouterr().err == f"error: {out} exists; pick another name or add --force to replace it\n"
    assert out.read_text(encoding="utf-8") == "the user's own notes"
    assert main(["extract-workflow", str(path), "--out", str(out), "--force"]) == 0
    assert json.loads(out.read_text(encoding="utf-8")) == WORKFLOW
    capsys.readouterr()
    assert main(["extract-workflow", str(path), "--out", str(tmp_path / "no" / "such" / "dir.json")]) == 1
    assert capsys.readouterr().err.startswith(f"error: cannot write {tmp_path / 'no' / 'such' / 'dir.json'} (")


# -- refusals ---------------------------------------------------------------------

def refusal(capsys, path) -> str:
    assert main(["extract-workflow", str(path)]) == 1
    return capsys.readouterr().err


def test_video_without_metadata(tmp_path, capsys):
    path = write_video(tmp_path / "bare.mp4", "mp4", "h264", None)
    err = refusal(capsys, path)
    assert "this MP4/MOV file carries no ComfyUI workflow" in err
    assert "first-frame PNG" in err


def test_png_with_prompt_only(tmp_path, capsys):
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", json.dumps(PROMPT))
    path = tmp_path / "p.png"
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    err = refusal(capsys, path)
    assert "carries an API prompt only" in err
    assert main(["extract-workflow", str(path), "--prompt"]) == 0


def test_plain_png_and_webp(tmp_path, capsys):
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "x.webp")
    assert "this PNG file carries no ComfyUI workflow" in refusal(capsys, tmp_path / "x.png")
    assert "this WEBP file carries no ComfyUI workflow" in refusal(capsys, tmp_path / "x.webp")


def test_not_a_media_file(tmp_path, capsys):
    (tmp_path / "w.json").write_text(json.dumps(WORKFLOW))
    assert "unrecognised header" in refusal(capsys, tmp_path / "w.json")
    assert "no such file" in refusal(capsys, tmp_path / "missing.mp4")


def test_damaged_json_and_truncated_file(tmp_path, capsys):
    bad = write_video(tmp_path / "bad.mp4", "mp4", "h264", {"workflow": '{"nodes": [', "prompt": "{}"})
    assert "'workflow' metadata is not valid JSON" in refusal(capsys, bad)
    good = write_video(tmp_path / "good.mp4", "mp4", "h264", comfy_tags(), faststart=False)
    data = good.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) - 200])  # the moov box (at the end) is cut short: no crash, a clear refusal
    assert "carries no ComfyUI workflow" in refusal(capsys, cut)


def test_verb_runs_as_a_module(tmp_path):
    path = write_video(tmp_path / "v.mp4", "mp4", "h264", comfy_tags())
    done = subprocess.run([sys.executable, "-m", "twostage_i2v", "extract-workflow", str(path)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == WORKFLOW
