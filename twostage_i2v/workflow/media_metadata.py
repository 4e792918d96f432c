"""Read the workflow and prompt that ComfyUI embeds in its output files.

Where ComfyUI (and its frontend, which reads them back on drop) keeps them:
- PNG: text chunks ``workflow`` and ``prompt`` (tEXt, zTXt or iTXt).
- WEBP: EXIF strings ``workflow:{...}`` and ``prompt:{...}`` (0x010F / 0x0110 in
  current ComfyUI; older versions used other tags, so every string is scanned).
- MP4 / MOV / M4V: QuickTime metadata (``moov/udta/meta`` or ``moov/meta`` with a
  ``keys`` box and an ``ilst``), values JSON text.
- WEBM / MKV: Matroska tags ``workflow`` / ``prompt`` (any case), read with PyAV.

PNG chunks, the WEBP RIFF chunks and their EXIF directory, and the MP4 box tree
are walked here by seeking, with every size field checked against what contains it
and the file's real size, so a truncated, corrupted or lying file is refused (or
read up to the damage, which the message then names) without reading more than it
holds, and compressed text is inflated at most up to ``MAX_TEXT_BYTES``. No image
is decoded.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from .json_text import MAX_TEXT_BYTES, BadWorkflowFile, check_regular_file, mib, parse
from .shape import check_shape

KEYS = ("workflow", "prompt")
# Far above any real file (a few boxes per level, a few thousand PNG or WEBP chunks per 100 MB).
MAX_BOXES = 10_000
MAX_CHUNKS = 1_000_000
MAX_EXIF_ENTRIES = 4096
# A chunk this much larger than the text limit cannot hold a workflow (its header aside): not read.
_MAX_CHUNK = MAX_TEXT_BYTES + 4096


class NoWorkflow(BadWorkflowFile):
    """The file has no workflow (or cannot be read as a supported container)."""


@dataclass(frozen=True)
class TooLarge:
    """A metadata value that was not read: it is larger than any workflow."""

    what: str

    def __str__(self):
        return self.what

    @classmethod
    def of(cls, size: int, what: str = "text") -> "TooLarge":
        return cls(f"{what} of {mib(size)}, more than any workflow ({mib(MAX_TEXT_BYTES)})")


def _fourcc(kind: bytes) -> str:
    text = kind.decode("latin-1")
    return text if text.isprintable() and text.isascii() else "0x" + kind.hex()


class _Reader:
    """A file read by offset, with the damage found on the way."""

    def __init__(self, path: Path, f, size: int):
        self.path, self.f, self.size = path, f, size
        self.damage: str | None = None

    def read(self, pos: int, n: int) -> bytes | None:
        if n < 0 or pos < 0 or pos + n > self.size:
            return None
        self.f.seek(pos)
        data = self.f.read(n)
        return data if len(data) == n else None

    def damaged(self, what: str) -> None:
        if self.damage is None:
            self.damage = what


def sniff(path: Path) -> str:
    """The container kind from the first bytes: png, webp, isobmff, matroska or unknown."""
    check_regular_file(Path(path))
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise NoWorkflow(f"{path}: cannot be read ({exc.strerror or exc})") from None
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

def _boxes(r: _Reader, start: int, end: int):
    """(type, payload offset, payload end) of the boxes in [start, end); stops at damage."""
    pos, count = start, 0
    while pos + 8 <= end:
        count += 1
        if count > MAX_BOXES:
            r.damaged(f"more than {MAX_BOXES} boxes in one container at byte {start}")
            return
        header = r.read(pos, 8)
        if header is None:
            r.damaged(f"the box at byte {pos} is cut off")
            return
        size, kind = struct.unpack(">I4s", header)
        offset = 8
        if size == 1:
            large = r.read(pos + 8, 8)
            if large is None:
                r.damaged(f"the box at byte {pos} is cut off")
                return
            size, offset = struct.unpack(">Q", large)[0], 16
        elif size == 0:
            size = end - pos
        if size < offset or pos + size > end:
            r.damaged(f"box '{_fourcc(kind)}' at byte {pos} says it is {size} bytes, "
                      f"only {end - pos} remain (truncated?)")
            return
        yield kind, pos + offset, pos + size
        pos += size


def _meta_children_start(r: _Reader, start: int) -> int:
    # 'meta' is a full box (4 bytes version/flags) in MP4, a plain box in QuickTime. In a plain box the
    # first child's type sits at bytes 4..8; in a full box those bytes are the first child's size.
    probe = r.read(start + 4, 4)
    return start if probe in (b"hdlr", b"keys", b"ilst", b"free") else start + 4


def _data_value(r: _Reader, start: int, end: int):
    for kind, p0, p1 in _boxes(r, start, end):
        if kind == b"data" and p1 - p0 >= 8:
            type_code = struct.unpack(">I", r.read(p0, 4))[0] & 0xFFFFFF
            if type_code not in (0, 1, 2):  # 1 UTF-8, 2 UTF-16; 0 (implicit) is used by some writers for text
                return None
            if p1 - p0 - 8 > MAX_TEXT_BYTES:
                return TooLarge.of(p1 - p0 - 8)
            raw = r.read(p0 + 8, p1 - p0 - 8)
            return raw.decode("utf-16-be" if type_code == 2 else "utf-8", errors="replace")
    return None


def _keys(r: _Reader, p0: int, p1: int) -> list[str]:
    head = r.read(p0, 8)
    if head is None:
        return []
    count = struct.unpack(">I", head[4:])[0]  # after version/flags
    if count > min((p1 - p0 - 8) // 8, MAX_BOXES):
        r.damaged(f"the metadata 'keys' box at byte {p0} says it holds {count} keys, it has room for "
                  f"{(p1 - p0 - 8) // 8}")
        return []
    keys, pos = [], p0 + 8
    for _ in range(count):
        entry = r.read(pos, 8)
        size = struct.unpack(">I", entry[:4])[0] if entry else 0
        if entry is None or size < 8 or pos + size > p1:
            r.damaged(f"metadata key {len(keys) + 1} at byte {pos} is damaged")
            return keys
        keys.append(r.read(pos + 8, size - 8).decode("utf-8", errors="replace"))
        pos += size
    return keys


def _read_meta_box(r: _Reader, start: int, end: int, out: dict) -> None:
    keys: list[str] = []
    ilst = None
    for kind, p0, p1 in _boxes(r, _meta_children_start(r, start), end):
        if kind == b"keys":
            keys = _keys(r, p0, p1)
        elif kind == b"ilst":
            ilst = (p0, p1)
    if ilst is None:
        return
    for kind, p0, p1 in _boxes(r, *ilst):
        index = struct.unpack(">I", kind)[0]
        if keys and 1 <= index <= len(keys):
            name = keys[index - 1]
        else:
            name = kind.decode("latin-1")  # classic iTunes atoms such as '\xa9cmt'
        value = _data_value(r, p0, p1)
        if value is not None:
            out[name] = value


def _isobmff(r: _Reader) -> dict:
    out: dict = {}
    for kind, p0, p1 in _boxes(r, 0, r.size):
        if kind != b"moov":
            continue
        for k2, q0, q1 in _boxes(r, p0, p1):
            if k2 == b"meta":
                _read_meta_box(r, q0, q1, out)
            elif k2 == b"udta":
                for k3, s0, s1 in _boxes(r, q0, q1):
                    if k3 == b"meta":
                        _read_meta_box(r, s0, s1, out)
    return out


# -- PNG ---------------------------------------------------------------------------

def _inflate(data: bytes):
    """zlib data inflated to at most MAX_TEXT_BYTES: bytes, TooLarge, or None when damaged."""
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, MAX_TEXT_BYTES + 1)
    except zlib.error:
        return None
    if len(out) > MAX_TEXT_BYTES or d.unconsumed_tail:
        return TooLarge(f"compressed text that inflates past {mib(MAX_TEXT_BYTES)}, more than any workflow "
                        "(a decompression bomb?)")
    return out if d.eof else None


def _png_text(ctype: bytes, data: bytes):
    """(keyword, value or TooLarge) of a tEXt/zTXt/iTXt chunk; None when damaged."""
    keyword, sep, rest = data.partition(b"\0")
    if not sep:
        return None
    name = keyword.decode("latin-1")
    if ctype == b"tEXt":
        return name, rest.decode("latin-1")
    if ctype == b"zTXt":
        value = _inflate(rest[1:]) if rest[:1] == b"\0" else None
        return None if value is None else (name, value if isinstance(value, TooLarge) else value.decode("latin-1"))
    if len(rest) < 2:
        return None
    compressed, method, rest = rest[0], rest[1], rest[2:]
    parts = rest.split(b"\0", 2)  # language tag, translated keyword, text
    if len(parts) != 3:
        return None
    text = parts[2]
    if compressed:
        text = _inflate(text) if method == 0 else None
        if text is None or isinstance(text, TooLarge):
            return None if text is None else (name, text)
    return name, text.decode("utf-8", errors="replace")


def _png(r: _Reader) -> dict:
    out: dict = {}
    pos, count = 8, 0
    while True:
        count += 1
        head = r.read(pos, 8)
        if head is None:
            r.damaged(f"it ends at byte {r.size}, before its last (IEND) chunk (truncated?)")
            break
        length, ctype = struct.unpack(">I4s", head)
        name = _fourcc(ctype)
        if length > 0x7FFFFFFF or pos + 12 + length > r.size:
            r.damaged(f"chunk '{name}' at byte {pos} says it is {length} bytes, "
                      f"only {max(r.size - pos - 12, 0)} remain (truncated?)")
            break
        if ctype == b"IEND":
            break
        if count > MAX_CHUNKS:
            r.damaged(f"more than {MAX_CHUNKS} chunks")
            break
        if ctype in (b"tEXt", b"zTXt", b"iTXt"):
            if length > _MAX_CHUNK:
                keyword = (r.read(pos + 8, 80) or b"").partition(b"\0")[0].decode("latin-1")
                out[keyword] = TooLarge.of(length, f"a '{name}' chunk")
            else:
                data, crc = r.read(pos + 8, length), r.read(pos + 8 + length, 4)
                if zlib.crc32(ctype + data) != struct.unpack(">I", crc)[0]:
                    r.damaged(f"chunk '{name}' at byte {pos} fails its CRC (damaged)")
                else:
                    found = _png_text(ctype, data)
                    if found is None:
                        r.damaged(f"chunk '{name}' at byte {pos} is damaged")
                    elif found[0] not in out:
                        out[found[0]] = found[1]
        pos += 12 + length
    return out


# -- WEBP --------------------------------------------------------------------------

_EXIF_TEXT_TYPES = (1, 2, 7)  # BYTE, ASCII, UNDEFINED


def _exif_strings(r: _Reader, data: bytes, at: int) -> list[str]:
    """The text values of IFD0 of an EXIF block (a TIFF header, optionally after 'Exif\\0\\0')."""
    if data.startswith(b"Exif\0\0"):
        data, at = data[6:], at + 6
    if len(data) < 8 or data[:4] not in (b"II*\0", b"MM\0*"):
        r.damaged(f"its EXIF data at byte {at} is not a TIFF block (too short, or no 'II*'/'MM*' header)")
        return []
    e = "<" if data[:2] == b"II" else ">"
    ifd = struct.unpack(e + "I", data[4:8])[0]
    if ifd + 2 > len(data):
        r.damaged(f"its EXIF directory at byte {at + ifd} lies outside the EXIF data")
        return []
    count = struct.unpack(e + "H", data[ifd:ifd + 2])[0]
    if count > MAX_EXIF_ENTRIES or ifd + 2 + 12 * count > len(data):
        r.damaged(f"its EXIF directory at byte {at + ifd} says it has {count} entries, the data has room for "
                  f"{max(len(data) - ifd - 2, 0) // 12}")
        count = min(count, max(len(data) - ifd - 2, 0) // 12, MAX_EXIF_ENTRIES)
    out = []
    for i in range(count):
        entry = data[ifd + 2 + 12 * i: ifd + 14 + 12 * i]
        _tag, kind, n = struct.unpack(e + "HHI", entry[:8])
        if kind not in _EXIF_TEXT_TYPES:
            continue
        offset = ifd + 10 + 12 * i if n <= 4 else struct.unpack(e + "I", entry[8:])[0]
        if offset + n > len(data):
            r.damaged(f"EXIF entry {i} says its text is {n} bytes at {offset}, outside the EXIF data")
            continue
        out.append(data[offset:offset + n].rstrip(b"\0").decode("utf-8", errors="replace"))
    return out


def _webp(r: _Reader) -> dict:
    riff = r.read(4, 4)
    end = 8 + struct.unpack("<I", riff)[0]
    if end > r.size:
        r.damaged(f"its RIFF header says {end} bytes, the file has {r.size} (truncated?)")
        end = r.size
    out: dict = {}
    pos, count = 12, 0
    while pos + 8 <= end:
        count += 1
        if count > MAX_CHUNKS:
            r.damaged(f"more than {MAX_CHUNKS} chunks")
            break
        fourcc, size = struct.unpack("<4sI", r.read(pos, 8))
        if pos + 8 + size > end:
            r.damaged(f"chunk '{_fourcc(fourcc)}' at byte {pos} says it is {size} bytes, "
                      f"only {end - pos - 8} remain (truncated?)")
            break
        if fourcc == b"EXIF":
            if size > _MAX_CHUNK:
                out.setdefault("workflow", TooLarge.of(size, "an EXIF chunk"))
            else:
                for value in _exif_strings(r, r.read(pos + 8, size), pos + 8):
                    name, sep, rest = value.partition(":")
                    key = name.strip().lower()
                    if sep and key in KEYS and key not in out:
                        out[key] = rest
        pos += 8 + size + (size & 1)
    return out


# -- WEBM / MKV ------------------------------------------------------------------------

def matroska_tags(path: Path) -> dict:
    try:
        import av
    except ImportError:
        raise NoWorkflow(f"{path}: reading WEBM/MKV needs PyAV (pip install av; ComfyUI installs it)") from None
    try:
        with av.open(str(path), metadata_errors="replace") as c:
            tags = dict(c.metadata)
            for stream in c.streams:
                for k, v in dict(stream.metadata).items():
                    tags.setdefault(k, v)
    except (av.FFmpegError, OSError, ValueError, EOFError) as exc:
        raise NoWorkflow(f"{path}: damaged WEBM/MKV: FFmpeg cannot read it ({exc})") from None
    return {k: (TooLarge.of(len(v)) if isinstance(v, str) and len(v) > MAX_TEXT_BYTES else v) for k, v in tags.items()}


# -- all of them -----------------------------------------------------------------------

_WALKERS = {"png": _png, "webp": _webp, "isobmff": _isobmff}
NAMES = {"png": "PNG", "webp": "WEBP", "isobmff": "MP4/MOV", "matroska": "WEBM/MKV"}


def _read(path) -> tuple[str, dict, str | None]:
    """(container kind, tags, the damage met or None)."""
    path = Path(path)
    kind = sniff(path)
    if kind == "unknown":
        raise NoWorkflow(f"{path}: not a PNG, WEBP, MP4/MOV/M4V or WEBM file (unrecognised header)")
    if kind == "matroska":
        return kind, matroska_tags(path), None
    try:
        with open(path, "rb") as f:
            r = _Reader(path, f, path.stat().st_size)
            tags = _WALKERS[kind](r)
    except OSError as exc:
        raise NoWorkflow(f"{path}: cannot be read ({exc.strerror or exc})") from None
    return kind, tags, r.damage


def read_tags(path) -> tuple[str, dict]:
    """(container kind, text tags) of a PNG, WEBP, MP4/MOV/M4V or WEBM/MKV file.

    A value larger than any workflow is not read: it is a ``TooLarge`` instead of a string."""
    kind, tags, _damage = _read(path)
    return kind, tags


def isobmff_tags(path) -> dict:
    return _tags_of(path, "isobmff")


def png_tags(path) -> dict:
    return _tags_of(path, "png")


def webp_tags(path) -> dict:
    return _tags_of(path, "webp")


def _tags_of(path, kind: str) -> dict:
    found, tags = read_tags(path)
    if found != kind:
        raise NoWorkflow(f"{path}: not a {NAMES[kind]} file")
    return tags


def _parse_json(text: str, path, key: str):
    what = f"its '{key}' metadata"
    value = parse(text, path, what)
    # Some writers encode twice (a JSON string holding JSON).
    if isinstance(value, str):
        value = parse(value, path, what)
    return value


def embedded(path) -> dict:
    """{"container", "workflow", "prompt"}: the parsed JSON of each key, or None where absent.

    ``NoWorkflow`` when a key is there but unreadable; ``"damage"`` says where the file
    stopped making sense, when it did."""
    kind, tags, damage = _read(path)
    lowered = {}
    for k, v in tags.items():
        lowered.setdefault(k.lower(), v)
    out = {"container": kind}
    for key in KEYS:
        text = lowered.get(key)
        if isinstance(text, TooLarge):
            raise NoWorkflow(f"{path}: its '{key}' metadata is {text}: damaged, or not written by ComfyUI")
        out[key] = None if text is None else _parse_json(text, path, key)
    if damage:
        out["damage"] = damage
    return out


def _no_workflow_hint(found: dict) -> str:
    if found.get("damage"):
        return f" The file is damaged: {found['damage']}."
    if found["prompt"]:
        return (" It carries an API prompt only (re-run it in ComfyUI to get a full workflow; "
                "extract-workflow --prompt prints that prompt).")
    return " Sites and converters often strip video metadata: try the first-frame PNG saved next to the video."


def extract_workflow(path) -> dict:
    """The UI workflow embedded in the file; ``NoWorkflow`` with the reason when there is none."""
    found = embedded(path)
    wf = found["workflow"]
    if wf is not None and wf != {}:
        check_shape(wf, f"{path}: its 'workflow' metadata")
        return wf
    raise NoWorkflow(f"{path}: this {NAMES[found['container']]} file carries no ComfyUI workflow."
                     + _no_workflow_hint(found))


def extract_prompt(path) -> dict:
    found = embedded(path)
    if found["prompt"] is not None and found["prompt"] != {}:
        check_shape(found["prompt"], f"{path}: its 'prompt' metadata")
    if not isinstance(found["prompt"], dict) or not found["prompt"]:
        damage = f" The file is damaged: {found['damage']}." if found.get("damage") else ""
        raise NoWorkflow(f"{path}: this file carries no ComfyUI prompt.{damage}")
    return found["prompt"]
