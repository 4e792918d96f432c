"""Read the workflow and prompt that ComfyUI embeds in its output files.

Where ComfyUI (and its frontend, which reads them back on drop) keeps them:
- PNG: text chunks ``workflow`` and ``prompt`` (tEXt, zTXt or iTXt).
- WEBP: EXIF strings ``workflow:{...}`` and ``prompt:{...}`` (0x010F / 0x0110 in
  current ComfyUI; older versions used other tags, so every string is scanned).
- MP4 / MOV / M4V: QuickTime metadata (``moov/udta/meta`` or ``moov/meta`` with a
  ``keys`` box and an ``ilst``), values JSON text. Parsed here from the box
  structure, no FFmpeg needed.
- WEBM / MKV: Matroska tags ``workflow`` / ``prompt`` (any case), read with PyAV.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

KEYS = ("workflow", "prompt")


class NoWorkflow(ValueError):
    """The file has no workflow (or cannot be read as a supported container)."""


def sniff(path: Path) -> str:
    """The container kind from the first bytes: png, webp, isobmff, matroska or unknown."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        return "isobmff"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    return "unknown"


# -- ISO-BMFF (MP4 / MOV / M4V) --------------------------------------------------

def _boxes(f, start: int, end: int):
    """(type, payload offset, payload end) of the boxes in [start, end)."""
    pos = start
    while pos + 8 <= end:
        f.seek(pos)
        header = f.read(8)
        if len(header) < 8:
            return
        size, kind = struct.unpack(">I4s", header)
        offset = 8
        if size == 1:
            size = struct.unpack(">Q", f.read(8))[0]
            offset = 16
        elif size == 0:
            size = end - pos
        if size < offset or pos + size > end:
            return  # truncated or corrupt: stop rather than read garbage
        yield kind, pos + offset, pos + size
        pos += size


def _meta_children_start(f, start: int, end: int) -> int:
    # 'meta' is a full box (4 bytes version/flags) in MP4, a plain box in QuickTime. In a plain box the
    # first child's type sits at bytes 4..8; in a full box those bytes are the first child's size.
    f.seek(start + 4)
    probe = f.read(4)
    return start if probe in (b"hdlr", b"keys", b"ilst", b"free") else start + 4


def _data_value(f, start: int, end: int):
    for kind, p0, p1 in _boxes(f, start, end):
        if kind == b"data" and p1 - p0 >= 8:
            f.seek(p0)
            type_code = struct.unpack(">I", f.read(4))[0] & 0xFFFFFF
            f.read(4)  # locale
            raw = f.read(p1 - p0 - 8)
            if type_code in (1, 0):  # UTF-8 (0: implicit, used by some writers)
                return raw.decode("utf-8", errors="replace")
            if type_code == 2:
                return raw.decode("utf-16-be", errors="replace")
            return None
    return None


def _read_meta_box(f, start: int, end: int, out: dict) -> None:
    first = _meta_children_start(f, start, end)
    keys: list[str] = []
    ilst = None
    for kind, p0, p1 in _boxes(f, first, end):
        if kind == b"keys":
            f.seek(p0 + 4)  # version/flags
            count = struct.unpack(">I", f.read(4))[0]
            pos = p0 + 8
            for _ in range(count):
                f.seek(pos)
                size = struct.unpack(">I", f.read(4))[0]
                f.read(4)  # namespace, "mdta"
                keys.append(f.read(size - 8).decode("utf-8", errors="replace"))
                pos += size
        elif kind == b"ilst":
            ilst = (p0, p1)
    if ilst is None:
        return
    for kind, p0, p1 in _boxes(f, *ilst):
        index = struct.unpack(">I", kind)[0]
        if keys and 1 <= index <= len(keys):
            name = keys[index - 1]
        else:
            name = kind.decode("latin-1")  # classic iTunes atoms such as '\xa9cmt'
        value = _data_value(f, p0, p1)
        if value is not None:
            out[name] = value


def isobmff_tags(path: Path) -> dict[str, str]:
    """Every text tag of the movie's metadata boxes (keys as written)."""
    out: dict[str, str] = {}
    size = Path(path).stat().st_size
    with open(path, "rb") as f:
        for kind, p0, p1 in _boxes(f, 0, size):
            if kind != b"moov":
                continue
            for k2, q0, q1 in _boxes(f, p0, p1):
                if k2 == b"meta":
                    _read_meta_box(f, q0, q1, out)
                elif k2 == b"udta":
                    for k3, r0, r1 in _boxes(f, q0, q1):
                        if k3 == b"meta":
                            _read_meta_box(f, r0, r1, out)
    return out


# -- the others ------------------------------------------------------------------

def png_tags(path: Path) -> dict[str, str]:
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        text = dict(getattr(img, "text", {}) or {})
        text.update({k: v for k, v in img.info.items() if isinstance(v, str) and k not in text})
    return text


def webp_tags(path: Path) -> dict[str, str]:
    from PIL import Image

    out = {}
    with Image.open(path) as img:
        exif = img.getexif()
    for value in exif.values():
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        if isinstance(value, str) and ":" in value:
            name, _, rest = value.partition(":")
            if name.strip().lower() in KEYS and name.strip().lower() not in out:
                out[name.strip().lower()] = rest
    return out


def matroska_tags(path: Path) -> dict[str, str]:
    try:
        import av
    except ImportError:
        raise NoWorkflow(f"{path}: reading WEBM/MKV needs PyAV (pip install av; ComfyUI installs it)") from None
    with av.open(str(path)) as c:
        tags = dict(c.metadata)
        for stream in c.streams:
            for k, v in dict(stream.metadata).items():
                tags.setdefault(k, v)
    return tags


def read_tags(path) -> tuple[str, dict[str, str]]:
    """(container kind, raw text tags) of a PNG, WEBP, MP4/MOV/M4V or WEBM/MKV file."""
    path = Path(path)
    if not path.is_file():
        raise NoWorkflow(f"{path}: no such file")
    kind = sniff(path)
    readers = {"png": png_tags, "webp": webp_tags, "isobmff": isobmff_tags, "matroska": matroska_tags}
    if kind not in readers:
        raise NoWorkflow(f"{path}: not a PNG, WEBP, MP4/MOV/M4V or WEBM file (unrecognised header)")
    try:
        return kind, readers[kind](path)
    except NoWorkflow:
        raise
    except Exception as exc:  # a damaged file: say so instead of a traceback
        raise NoWorkflow(f"{path}: cannot read its metadata ({type(exc).__name__}: {exc})") from None


def _parse_json(text: str):
    value = json.loads(text)
    # Some writers encode twice (a JSON string holding JSON).
    if isinstance(value, str):
        value = json.loads(value)
    return value


def embedded(path) -> dict:
    """{"container", "workflow", "prompt"}: the parsed JSON of each key, or None where absent."""
    kind, tags = read_tags(path)
    lowered = {k.lower(): v for k, v in tags.items()}
    out = {"container": kind}
    for key in KEYS:
        text = lowered.get(key)
        if text is None:
            out[key] = None
            continue
        try:
            out[key] = _parse_json(text)
        except (json.JSONDecodeError, TypeError):
            raise NoWorkflow(f"{path}: its '{key}' metadata is not valid JSON (damaged or truncated?)") from None
    return out


def extract_workflow(path) -> dict:
    """The UI workflow embedded in the file; ``NoWorkflow`` with the reason when there is none."""
    found = embedded(path)
    wf = found["workflow"]
    if isinstance(wf, dict) and wf:
        return wf
    names = {"png": "PNG", "webp": "WEBP", "isobmff": "MP4/MOV", "matroska": "WEBM/MKV"}
    hint = (" It carries an API prompt only (re-run it in ComfyUI to get a full workflow; "
            "extract-workflow --prompt prints that prompt)." if found["prompt"] else
            " Sites and converters often strip video metadata: try the first-frame PNG saved next to the video.")
    raise NoWorkflow(f"{path}: this {names[found['container']]} file carries no ComfyUI workflow.{hint}")


def extract_prompt(path) -> dict:
    found = embedded(path)
    if not isinstance(found["prompt"], dict) or not found["prompt"]:
        raise NoWorkflow(f"{path}: this file carries no ComfyUI prompt")
    return found["prompt"]
