"""Hostile workflow and media files: ``extract-workflow`` and ``validate-workflow`` answer every one
with a one-line message naming the file and what is wrong, a non-zero exit and no traceback, in
bounded time and memory.

Each file is built here (truncated and corrupted MP4/PNG/WEBP/WEBM, lying size fields,
compressed-text bombs, deep nesting, wrong field types, huge counts, NaN, non-UTF-8 ...). Each
verb runs as its own process under an address-space limit (``RLIMIT_AS``) and a timeout: safety
bounds far above what a real workflow needs, far below what a bomb would take. Under that
limit ComfyUI cannot even start, so these runs also show that a malformed file is refused
before any ComfyUI is asked. Files that are well formed but wrong (dangling links, unknown nodes)
need ComfyUI's node definitions: the last tests run those through the session's ComfyUI.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import resource
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from twostage_i2v.headless.inprocess import REPO_ROOT

MEMORY_LIMIT = 1024 * 2**20  # address space for one verb: Python, PyAV and a 64 MiB file's worth of JSON
TIME_LIMIT = 60
SHIPPED = REPO_ROOT / "workflows" / "two_stage_i2v_480p.json"
WORKFLOW = {"version": 0.4, "nodes": [{"id": 1, "type": "Note", "widgets_values": ["ünïcode ✓"]}],
            "links": [], "groups": [], "extra": {}, "last_node_id": 1, "last_link_id": 0}


# -- building blocks -----------------------------------------------------------------------

def box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def mp4_bytes(tags: dict | None = None, faststart: bool = True) -> bytes:
    """A real h264 MP4 written by PyAV (FFmpeg) with QuickTime metadata tags, as SaveVideo writes them."""
    return _video_bytes("mp4", "h264", tags, {"movflags": "use_metadata_tags" + ("+faststart" if faststart else "")})


def _video_bytes(fmt: str, codec: str, tags: dict | None, options: dict) -> bytes:
    import tempfile

    import av

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"v.{fmt}"
        with av.open(str(path), mode="w", format=fmt, options=options) as c:
            for k, v in (tags or {}).items():
                c.metadata[k] = v
            s = c.add_stream(codec, rate=16)
            s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
            for i in range(3):
                frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 40 * i, np.uint8), format="rgb24")
                for packet in s.encode(frame):
                    c.mux(packet)
            for packet in s.encode():
                c.mux(packet)
        return path.read_bytes()


def webm_bytes() -> bytes:
    return _video_bytes("webm", "libvpx", {"workflow": json.dumps(WORKFLOW)}, {})


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(*chunks: bytes) -> bytes:
    """A 1x1 grey PNG with the given chunks before its image data."""
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
    idat = png_chunk(b"IDAT", zlib.compress(b"\0\x80"))
    return b"\x89PNG\r\n\x1a\n" + ihdr + b"".join(chunks) + idat + png_chunk(b"IEND", b"")


def text_chunk(key: str, text: str) -> bytes:
    return png_chunk(b"tEXt", key.encode("latin-1") + b"\0" + text.encode("latin-1"))


@functools.lru_cache(maxsize=1)
def deflate_bomb() -> bytes:
    """zlib data that inflates to 2 GiB of spaces (about 2 MB compressed)."""
    c = zlib.compressobj(9)
    block = b" " * (16 * 2**20)
    return b"".join(c.compress(block) for _ in range(128)) + c.flush()


def webp_bytes(exif: bytes | None) -> bytes:
    """A WEBP written by Pillow, with ``exif`` as its EXIF chunk (as SaveAnimatedWEBP stores the workflow)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (90, 30, 10)).save(buf, format="WEBP", lossless=True, exif=exif or b"")
    return buf.getvalue()


def comfy_exif() -> bytes:
    from PIL import Image

    exif = Image.new("RGB", (1, 1)).getexif()
    exif[0x010F] = "workflow:" + json.dumps(WORKFLOW)
    return exif.tobytes()


def replace_chunk_size(data: bytes, fourcc: bytes, size: int) -> bytes:
    at = data.index(fourcc)
    return data[:at + 4] + struct.pack("<I", size) + data[at + 8:]


def ui(nodes, links=()) -> dict:
    return {"version": 0.4, "nodes": list(nodes), "links": list(links), "groups": [], "extra": {}}


def nested(depth: int):
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


# -- the cases ---------------------------------------------------------------------------------

def _write(data):
    return lambda path: path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))


def _json(value):
    return _write(json.dumps(value))


def _sparse(head: bytes, size: int):
    def write(path):
        with open(path, "wb") as f:
            f.write(head)
            f.truncate(size)
    return write


def _mp4_with_huge_data_box(path):
    n = 70 * 2**20  # a 'workflow' value of 70 MiB of zeros, the rest of the boxes consistent with it
    key = struct.pack(">I4s", 16, b"mdta") + b"workflow"
    keys = box(b"keys", b"\0\0\0\0" + struct.pack(">I", 1) + key)
    data_head = struct.pack(">I4s", 16 + n, b"data") + struct.pack(">II", 1, 0)
    item_head = struct.pack(">II", 8 + len(data_head) + n, 1)
    ilst_head = struct.pack(">I4s", 8 + len(item_head) + len(data_head) + n, b"ilst")
    meta_head = struct.pack(">I4s", 8 + 4 + len(keys) + len(ilst_head) + len(item_head) + len(data_head) + n,
                            b"meta") + b"\0\0\0\0"
    moov_size = 8 + len(meta_head) + len(keys) + len(ilst_head) + len(item_head) + len(data_head) + n
    ftyp = box(b"ftyp", b"isom\0\0\2\0isomiso2")
    head = ftyp + struct.pack(">I4s", moov_size, b"moov") + meta_head + keys + ilst_head + item_head + data_head
    _sparse(head, len(head) + n)(path)


def _mp4_cut(path):
    data = mp4_bytes({"workflow": json.dumps(WORKFLOW)}, faststart=False)
    path.write_bytes(data[:-200])  # the moov box, at the end, loses its tail


def _mp4_corrupt(path):
    data = bytearray(mp4_bytes({"workflow": json.dumps(WORKFLOW)}))
    start, end = data.index(b"udta") - 4, data.index(b"mdat") - 4
    data[start + 8:end] = np.random.default_rng(3).integers(0, 256, end - start - 8, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def _mp4_lying_moov(path):
    data = bytearray(mp4_bytes({"workflow": json.dumps(WORKFLOW)}))
    at = data.index(b"moov") - 4
    data[at:at + 4] = struct.pack(">I", 0xFFFFFFF0)
    path.write_bytes(bytes(data))


def _mp4_lying_keys(path):
    data = bytearray(mp4_bytes({"workflow": json.dumps(WORKFLOW)}))
    at = data.index(b"keys") + 4 + 4  # type, version/flags, then the count
    data[at:at + 4] = struct.pack(">I", 0xFFFFFFFF)
    path.write_bytes(bytes(data))


def _mp4_box_flood(path):
    flood = struct.pack(">I4s", 8, b"free") * 2_000_000
    path.write_bytes(box(b"ftyp", b"isom\0\0\2\0isom") + struct.pack(">I4s", 8 + len(flood), b"moov") + flood)


def _png_cut(path):
    data = png_bytes(text_chunk("workflow", json.dumps(WORKFLOW)))
    path.write_bytes(data[:data.index(b"tEXt") + 30])


def _png_bad_crc(path):
    data = bytearray(png_bytes(text_chunk("workflow", json.dumps(WORKFLOW))))
    data[data.index(b"nodes")] ^= 0x20
    path.write_bytes(bytes(data))


def _png_lying_length(path):
    data = png_bytes(text_chunk("workflow", json.dumps(WORKFLOW)))
    at = data.index(b"tEXt") - 4
    path.write_bytes(data[:at] + struct.pack(">I", 0x7FFFFFFF) + data[at + 4:])


def _png_ztxt_bomb(path):
    path.write_bytes(png_bytes(png_chunk(b"zTXt", b"workflow\0\0" + deflate_bomb())))


def _png_itxt_bomb(path):
    path.write_bytes(png_bytes(png_chunk(b"iTXt", b"workflow\0\x01\x00\0\0" + deflate_bomb())))


def _webp_cut(path):
    data = webp_bytes(comfy_exif())
    path.write_bytes(data[:data.index(b"EXIF") + 40])


def _webp_exif_garbage(path):
    data = bytearray(webp_bytes(comfy_exif()))
    at = data.index(b"EXIF") + 8
    data[at:at + 64] = np.random.default_rng(5).integers(0, 256, 64, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def _webp_exif_stub(path):
    """The EXIF chunk cut down to the first four bytes of a TIFF header, every size field telling the truth."""
    data = webp_bytes(comfy_exif())
    at = data.index(b"EXIF")
    size = struct.unpack("<I", data[at + 4:at + 8])[0]
    rebuilt = data[:at] + b"EXIF" + struct.pack("<I", 4) + b"II*\0" + data[at + 8 + size + (size & 1):]
    path.write_bytes(rebuilt[:4] + struct.pack("<I", len(rebuilt) - 8) + rebuilt[8:])


def _webp_lying_chunk(path):
    path.write_bytes(replace_chunk_size(webp_bytes(comfy_exif()), b"EXIF", 0x7FFFFFF0))


def _webp_lying_exif_count(path):
    data = bytearray(webp_bytes(comfy_exif()))
    tiff = data.index(b"EXIF") + 8
    tiff += 6 if data[tiff:tiff + 6] == b"Exif\0\0" else 0
    endian = "<" if data[tiff:tiff + 2] == b"II" else ">"
    ifd = tiff + struct.unpack(endian + "I", data[tiff + 4:tiff + 8])[0]
    data[ifd:ifd + 2] = struct.pack(endian + "H", 0xFFFF)
    path.write_bytes(bytes(data))


def _webm_cut(path):
    path.write_bytes(webm_bytes()[:60])


def _webm_corrupt(path):
    data = bytearray(webm_bytes())
    data[40:] = np.random.default_rng(7).integers(0, 256, len(data) - 40, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def _shipped_cut(path):
    text = SHIPPED.read_text(encoding="utf-8")
    path.write_text(text[: len(text) // 2], encoding="utf-8")


def _fifo(path):
    os.mkfifo(path)


def _missing(path):
    pass


BOMB = r"compressed text that inflates past 64\.0 MiB, more than any workflow \(a decompression bomb\?\)"
BAD_JSON = "unrecognised header"  # what extract-workflow (media files only) says of any JSON file
# name -> (file name, builder, what validate-workflow says, what extract-workflow says (None: the same))
CASES = {
    "deep nesting (200,000 levels)": ("deep.json", _write("[" * 200_000 + "]" * 200_000),
                                      r"is nested more than 100 levels deep", BAD_JSON),
    "deep nesting inside a node": ("deep-node.json", _json(ui([{"id": 1, "type": "Note",
                                                                 "widgets_values": nested(500)}])),
                                   r"is nested more than 100 levels deep", BAD_JSON),
    "a node that is a string": ("node-string.json", _json(ui(["KSampler"])),
                                r"malformed UI workflow: nodes\[0\]: is a string \('KSampler'\), expected a node object",
                                BAD_JSON),
    "inputs that are a string": ("inputs-string.json", _json(ui([{"id": 3, "type": "KSampler", "inputs": "model"}])),
                                 r"node 3: 'inputs' is a string \('model'\), expected a list", BAD_JSON),
    "links that are a string": ("links-string.json", _json({"nodes": [], "links": "1,2,3"}),
                                r"'links' is a string \('1,2,3'\), expected a list of links", BAD_JSON),
    "a link of strings": ("link-strings.json", _json(ui([], [["a", 1, 0, 2, 0, "MODEL"]])),
                          r"links\[0\]: its id is a string \('a'\), expected an integer", BAD_JSON),
    "a link from slot -1": ("link-slot.json", _json(ui([{"id": 1, "type": "Reroute", "mode": 4, "outputs": []},
                                                         {"id": 2, "type": "VAEDecode", "inputs": [
                                                             {"name": "vae", "type": "VAE", "link": 1}]}],
                                                        [[1, 1, -1, 2, 0, "VAE"]])),
                            r"links\[0\]: its origin_slot is a number \(-1\), expected a slot number", BAD_JSON),
    "a node id that is a list": ("id-list.json", _json(ui([{"id": [1], "type": "Note"}])),
                                 r"nodes\[0\]: 'id' is a list", BAD_JSON),
    "widget values that are a number": ("widgets-number.json", _json(ui([{"id": 2, "type": "KSampler",
                                                                          "widgets_values": 7}])),
                                        r"node 2: 'widgets_values' is a number \(7\)", BAD_JSON),
    "an API prompt of wrong types": ("api-types.json", _json({"1": {"class_type": ["KSampler"], "inputs": "x"}}),
                                     r"malformed API prompt: node '1': 'class_type' is a list", BAD_JSON),
    "an API prompt with a junk entry": ("api-junk.json", _json({"1": {"class_type": "KSampler", "inputs": {}},
                                                                "2": "junk"}),
                                        r"node '2': is a string \('junk'\)", BAD_JSON),
    "top level a list": ("list.json", _write("[1, 2, 3]"), r"the top level is a JSON list", BAD_JSON),
    "top level a string": ("string.json", _write('"a workflow"'), r"the top level is a JSON string", BAD_JSON),
    "top level null": ("null.json", _write("null"), r"the top level is null", BAD_JSON),
    "an object that is no workflow": ("other.json", _json({"hello": "world"}),
                                      r"the top level is a JSON object without 'nodes'", BAD_JSON),
    "NaN": ("nan.json", _write('{"nodes": [], "links": [], "extra": {"ds": NaN}}'), r"contains NaN", BAD_JSON),
    "Infinity": ("inf.json", _write('{"nodes": [], "links": [], "x": -Infinity}'), r"contains -Infinity", BAD_JSON),
    "a number beyond float": ("big.json", _write('{"nodes": [], "links": [], "x": 1e999}'),
                              r"the number 1e999, beyond the range of a float", BAD_JSON),
    "a 10,000-digit number": ("digits.json", _write('{"nodes": [], "links": [], "x": ' + "9" * 10_000 + "}"),
                              r"a number thousands of digits long", BAD_JSON),
    "an unpaired surrogate": ("surrogate.json", _write('{"nodes": [], "links": [], "x": "\\ud800"}'),
                              r"unpaired UTF-16 surrogate \(\\ud800\)", BAD_JSON),
    "not UTF-8": ("latin1.json", _write('{"nodes": [], "links": [], "title": "café"}'.encode("latin-1")),
                  r"not UTF-8 text \(byte 40 is 0xe9\)", BAD_JSON),
    "empty": ("empty.json", _write(b""), r"the file is empty", BAD_JSON),
    "whitespace only": ("blank.json", _write(b"  \n\t "), r"the file is empty", BAD_JSON),
    "truncated JSON": ("cut.json", _shipped_cut, r"is not valid JSON \(.*: line \d+ column \d+; truncated", BAD_JSON),
    "a 70 MiB file": ("huge.json", _sparse(b"{", 70 * 2**20), r"is 70\.0 MiB, more than any workflow file", BAD_JSON),
    "20,000 nodes": ("many-nodes.json", _json(ui([{"id": i, "type": "Note"} for i in range(20_000)])),
                     r"has 20000 nodes, more than the 10000", BAD_JSON),
    "a directory": ("folder.json", lambda p: p.mkdir(), r"is a directory, not a workflow file", None),
    "a pipe": ("pipe.json", _fifo, r"is not a regular file", None),
    "a missing file": ("missing.json", _missing, r"no such file", None),
    # MP4 / MOV
    "MP4 truncated": ("cut.mp4", _mp4_cut, r"carries no ComfyUI workflow or prompt\. The file is damaged: box 'moov' "
                      r"at byte \d+ says it is \d+ bytes, only \d+ remain",
                      r"carries no ComfyUI workflow\. The file is damaged: box 'moov'"),
    "MP4 corrupted metadata": ("corrupt.mp4", _mp4_corrupt, r"damaged", None),
    "MP4 lying moov size": ("lying-moov.mp4", _mp4_lying_moov, r"box 'moov' at byte \d+ says it is 4294967280 bytes",
                            None),
    "MP4 lying key count": ("lying-keys.mp4", _mp4_lying_keys,
                            r"'keys' box at byte \d+ says it holds 4294967295 keys", None),
    "MP4 two million boxes": ("flood.mp4", _mp4_box_flood, r"more than 10000 boxes in one container", None),
    "MP4 70 MiB metadata value": ("huge-tag.mp4", _mp4_with_huge_data_box,
                                  r"its 'workflow' metadata is text of 70\.0 MiB, more than any workflow", None),
    "MP4 workflow not JSON": ("not-json.mp4", lambda p: p.write_bytes(mp4_bytes({"workflow": '{"nodes": ['})),
                              r"its 'workflow' metadata is not valid JSON", None),
    "MP4 workflow nested deep": ("deep.mp4", lambda p: p.write_bytes(mp4_bytes({"workflow": "[" * 5000 + "]" * 5000})),
                                 r"its 'workflow' metadata is nested more than 100 levels", None),
    "MP4 workflow of wrong types": ("types.mp4", lambda p: p.write_bytes(mp4_bytes(
        {"workflow": json.dumps({"nodes": "all of them", "links": []})})),
        r"'nodes' is a string \('all of them'\), expected a list of nodes", None),
    # PNG
    "PNG truncated": ("cut.png", _png_cut, r"chunk 'tEXt' at byte \d+ says it is \d+ bytes, only \d+ remain", None),
    "PNG bad CRC": ("crc.png", _png_bad_crc, r"chunk 'tEXt' at byte \d+ fails its CRC", None),
    "PNG lying chunk length": ("lying.png", _png_lying_length, r"says it is 2147483647 bytes", None),
    "PNG zTXt bomb": ("ztxt-bomb.png", _png_ztxt_bomb, BOMB, None),
    "PNG iTXt bomb": ("itxt-bomb.png", _png_itxt_bomb, BOMB, None),
    "PNG signature only": ("signature.png", _write(b"\x89PNG\r\n\x1a\n"), r"before its last \(IEND\) chunk", None),
    "PNG workflow with NaN": ("nan.png", lambda p: p.write_bytes(png_bytes(text_chunk(
        "workflow", '{"nodes": [], "links": [], "x": NaN}'))), r"its 'workflow' metadata is not valid JSON: it "
        r"contains NaN", None),
    # WEBP
    "WEBP truncated": ("cut.webp", _webp_cut, r"damaged", None),
    "WEBP EXIF garbage": ("garbage.webp", _webp_exif_garbage, r"is not a TIFF block", None),
    "WEBP EXIF stub": ("stub.webp", _webp_exif_stub, r"EXIF data at byte \d+ is not a TIFF block \(too short", None),
    "WEBP lying chunk size": ("lying.webp", _webp_lying_chunk, r"chunk 'EXIF' at byte \d+ says it is 2147483632 bytes",
                              None),
    # WEBM
    "WEBM truncated": ("cut.webm", _webm_cut, r"damaged WEBM/MKV|carries no ComfyUI workflow", None),
    "WEBM corrupted": ("corrupt.webm", _webm_corrupt, r"damaged WEBM/MKV|carries no ComfyUI workflow", None),
    "Matroska header only": ("header.mkv", _write(b"\x1a\x45\xdf\xa3"), r"damaged WEBM/MKV", None),
}


def _limits():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_verb(argv: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    env = {k: v for k, v in os.environ.items() if k != "COMFYUI_PATH"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "twostage_i2v", *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=TIME_LIMIT, preexec_fn=_limits)
    return done, time.monotonic() - started


@pytest.mark.core
def test_there_are_enough_cases():
    assert len(CASES) >= 23
    assert {n.split()[0] for n in CASES} >= {"MP4", "PNG", "WEBP", "WEBM"}


@pytest.mark.core
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("verb", ["validate-workflow", "extract-workflow"])
def test_hostile_file_gets_one_line_and_no_traceback(tmp_path, case, verb):
    import re

    name, build, said, said_by_extract = CASES[case]
    path = tmp_path / name
    build(path)
    argv = [verb, str(path)] + (["--base-dir", str(tmp_path / "base")] if verb == "validate-workflow" else [])
    done, took = run_verb(argv, tmp_path)
    out = done.stdout + done.stderr
    assert "Traceback" not in out and "Error:" not in out.replace("error:", ""), out[-3000:]
    assert done.returncode != 0 and done.stdout == "", out[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: "), done.stderr[-3000:]
    expected = said if verb == "validate-workflow" or said_by_extract is None else said_by_extract
    assert re.search(expected, lines[0]), lines[0]
    assert took < TIME_LIMIT


@pytest.mark.core
@pytest.mark.parametrize("case", [c for c in CASES if CASES[c][0].endswith(".json")])
def test_library_calls_refuse_without_crashing(tmp_path, case):
    """The library itself, called on what such a file parses to: a refusal or a report with errors, nothing else."""
    from twostage_i2v.workflow.convert import ConversionError, ui_to_api
    from twostage_i2v.workflow.json_text import BadWorkflowFile, read_json_file
    from twostage_i2v.workflow.validate import validate

    name, build, _, _ = CASES[case]
    path = tmp_path / name
    build(path)
    try:
        data = read_json_file(path)
    except BadWorkflowFile as exc:
        assert str(exc).startswith(f"{path}: ")
        return
    report = validate(data, {})
    assert not report.ok and report.errors
    if isinstance(data, dict) and "nodes" in data:
        with pytest.raises(ConversionError):
            ui_to_api(data, {})


@pytest.mark.core
def test_the_limits_would_stop_a_bomb(tmp_path):
    """The bounds are real: the same process runs out of memory when it inflates the bomb in full."""
    (tmp_path / "bomb.z").write_bytes(deflate_bomb())
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    done = subprocess.run([sys.executable, "-c", "import sys, zlib; zlib.decompress(open(sys.argv[1], 'rb').read())",
                           str(tmp_path / "bomb.z")], env=env, capture_output=True, text=True, timeout=TIME_LIMIT,
                          preexec_fn=_limits)
    assert done.returncode != 0 and "MemoryError" in done.stderr


@pytest.mark.core
@pytest.mark.parametrize("suffix", [".mp4", ".png", ".webp", ".webm"])
def test_sound_files_of_each_kind_still_read(tmp_path, suffix, capsys):
    """The bounded readers read what ComfyUI writes (the healthy twin of each hostile family), under the limits."""
    path = tmp_path / f"ok{suffix}"
    if suffix == ".mp4":
        path.write_bytes(mp4_bytes({"workflow": json.dumps(WORKFLOW), "prompt": json.dumps({})}))
    elif suffix == ".png":
        path.write_bytes(png_bytes(png_chunk(b"zTXt", b"workflow\0\0" + zlib.compress(json.dumps(WORKFLOW).encode()))))
    elif suffix == ".webp":
        path.write_bytes(webp_bytes(comfy_exif()))
    else:
        path.write_bytes(webm_bytes())
    done, _ = run_verb(["extract-workflow", str(path)], tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == WORKFLOW


GOOD_FILES = {
    "mp4": lambda: mp4_bytes({"workflow": json.dumps(WORKFLOW), "prompt": json.dumps({})}),
    "png": lambda: png_bytes(text_chunk("prompt", "{}"), png_chunk(b"zTXt", b"workflow\0\0" + zlib.compress(
        json.dumps(WORKFLOW).encode()))),
    "webp": lambda: webp_bytes(comfy_exif()),
    "webm": webm_bytes,
}


@pytest.mark.core
@pytest.mark.parametrize("kind", sorted(GOOD_FILES))
def test_random_damage_gives_the_workflow_or_a_refusal(tmp_path, kind):
    """Seeded truncations, bit flips and size fields overwritten with lies, all over a sound file: the
    library gives the workflow back or refuses with one line naming the file, nothing else."""
    from twostage_i2v.workflow.json_text import BadWorkflowFile
    from twostage_i2v.workflow.media_metadata import extract_workflow

    good = GOOD_FILES[kind]()
    rng = np.random.default_rng(11)
    path = tmp_path / f"damaged.{kind}"
    outcomes = {"read": 0, "refused": 0}
    for i in range(240):
        data = bytearray(good)
        at = int(rng.integers(8, len(data) - 4))
        if i % 3 == 0:
            del data[at:]
        elif i % 3 == 1:
            for pos in rng.integers(0, len(data), int(rng.integers(1, 9))):
                data[pos] ^= 1 << int(rng.integers(0, 8))
        else:
            data[at:at + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x7f\xff\xff\xf0", b"\0\0\0\x01", b"\0\0\0\0"])
        path.write_bytes(bytes(data))
        try:
            extract_workflow(path)
            outcomes["read"] += 1
        except BadWorkflowFile as exc:
            assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc), str(exc)
            outcomes["refused"] += 1
    assert outcomes["refused"] >= 40 and outcomes["read"] >= 1, outcomes


@pytest.mark.core
def test_damage_beside_an_intact_workflow_leaves_it_readable(tmp_path):
    """A lying EXIF entry count: the entries that are there hold the workflow, and it is given back."""
    path = tmp_path / "lying-count.webp"
    _webp_lying_exif_count(path)
    done, _ = run_verb(["extract-workflow", str(path)], tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == WORKFLOW
    from twostage_i2v.workflow import media_metadata

    assert "says it has 65535 entries" in media_metadata.embedded(path)["damage"]


# -- well formed but wrong: these reach ComfyUI's node definitions --------------------------

def _dangling(wf: dict) -> dict:
    wf = copy.deepcopy(wf)
    wf["links"] = wf["links"][1:]
    return wf


def _bad_values(wf: dict) -> dict:
    wf = copy.deepcopy(wf)
    ks = next(n for n in wf["nodes"] if n["type"] == "KSampler")
    ks["widgets_values"] = [{"seed": 1}] * len(ks["widgets_values"])
    next(n for n in wf["nodes"] if n["type"] == "VAEDecode")["type"] = "NoSuchNode" * 1000
    return wf


@pytest.mark.comfy
@pytest.mark.parametrize("change,said", [
    (_dangling, r"\(dangling\)"),
    (_bad_values, r"unknown node type 'NoSuchNodeNoSuch.*\.\.\..*'|is not an integer"),
])
@pytest.mark.parametrize("container", ["json", "png"])
def test_wrong_but_well_formed_workflows_get_a_report(comfy, comfy_base, tmp_path, capsys, change, said, container):
    import re

    from twostage_i2v.cli import main

    wf = change(json.loads(SHIPPED.read_text(encoding="utf-8")))
    path = tmp_path / f"wf.{container}"
    if container == "json":
        path.write_text(json.dumps(wf), encoding="utf-8")
    else:
        path.write_bytes(png_bytes(png_chunk(b"iTXt", b"workflow\0\0\0\0\0" + json.dumps(wf).encode("utf-8"))))
    assert main(["validate-workflow", str(path), "--base-dir", str(comfy_base)]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"{path}: UI workflow, ") and "result: INVALID" in out
    assert re.search(said, out), out
    assert max(len(line) for line in out.splitlines()) < 400  # a huge name from the file is cut short
