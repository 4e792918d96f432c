"""Stage Bridge geometry: which frame Wan I2V (2.1, 2.2 A14B, 2.2 TI2V 5B) gets from a stage-1 image.

Pure Python (no torch): the node, the CLI verb ``plan`` and the server route
all ask this module, so they agree to the pixel.

Fit modes (the output is always ``width`` x ``height``, multiples of 16):

- ``crop``: scale so the image covers the target, keep the crop box at the
  anchor. The box is an integer rectangle of *source* pixels whose aspect is
  the target's to within one source pixel; it is resized to exactly W x H.
- ``pad``: scale so the whole image fits inside, place it at the anchor and
  fill the rest (colour, edge or blur; see ``bridge.pixels``). The content box
  is reported in *output* pixels.
- ``stretch``: resize the whole image to W x H, aspect not kept.
- ``official_area``: the Wan2.1 repository's own rule (``wan/image2video.py``):
  keep the image's aspect, take the target's area, floor each side to a
  multiple of 16, then stretch the image to that size. The output size then
  differs from the target (a 16:9 image becomes 832x464 for 832x480).

``scale`` is the largest of the two axis scales from the source region used
to the output, so ``upscaled`` (scale > 1) flags any axis being enlarged.
"""

from __future__ import annotations

import math
from fractions import Fraction

PRESETS = {
    "832x480 (480p)": (832, 480),
    "480x832 (480p portrait)": (480, 832),
    "624x624 (480p square)": (624, 624),
    "1280x720 (720p)": (1280, 720),
    "720x1280 (720p portrait)": (720, 1280),
    # Wan 2.2 TI2V 5B (Wan 2.2 VAE: 16x16 pixels per latent, patch 2, so multiples of 32). The A14B
    # experts take Wan 2.1's sizes above.
    "1280x704 (5B)": (1280, 704),
    "704x1280 (5B portrait)": (704, 1280),
}
CUSTOM = "custom"
TARGETS = [*PRESETS, CUSTOM]
FITS = ["crop", "pad", "stretch", "official_area"]
ORIENTATIONS = ["auto", "as target"]
ANCHORS = ["center", "top", "bottom", "left", "right"]

# (frames, fps) each Wan model was trained for: about 5 s, 4n + 1 frames (4 frames per latent after the first).
CLIPS = {"wan2.1": (81, 16.0), "wan2.2-a14b": (81, 16.0), "wan2.2-ti2v-5b": (121, 24.0)}

SIZE_STEP = 16  # Wan: VAE stride 8 x patch 2
STAGE1_STEP = 64  # SDXL latent 8 x UNet's three downsamplings
STAGE1_AREA = 1024 * 1024
# SDXL's training buckets lie within about +-7 % of 1024^2; +-10 % keeps every
# one of them reachable while still meaning "about one megapixel".
STAGE1_AREA_TOLERANCE = 0.10
STAGE1_MAX_SIDE = 4096


def _choice(name: str, value: str, options: list[str]) -> str:
    if value not in options:
        raise ValueError(f"unknown {name} {value!r}: pick one of {', '.join(options)}")
    return value


def check_size(value, name: str = "size") -> int:
    """An output side: a positive int multiple of 16, else a ValueError naming the nearest valid values."""
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name} {value!r} is not a whole number of pixels")
    if value < SIZE_STEP:
        raise ValueError(f"{name} {value} is too small: Wan needs at least {SIZE_STEP} pixels (a multiple of 16)")
    if value % SIZE_STEP:
        lower = value // SIZE_STEP * SIZE_STEP
        raise ValueError(f"{name} {value} is not a multiple of 16: Wan 2.1 needs multiples of 16; "
                         f"use {lower} or {lower + SIZE_STEP}")
    return value


def check_source(width, height) -> tuple[int, int]:
    for name, v in (("source width", width), ("source height", height)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"{name} {v!r} is not a whole number of pixels")
        if v <= 0:
            raise ValueError(f"{name} is {v}: the image is empty (0 size)")
    return width, height


def parse_size(text: str, name: str = "size") -> tuple[int, int]:
    """``"832x480"`` -> (832, 480); also accepts ``*`` or ``X`` as the separator."""
    parts = str(text).strip().lower().replace("*", "x").split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"{name} {text!r} is not WIDTHxHEIGHT (e.g. 832x480)")
    return int(parts[0]), int(parts[1])


def target_size(target: str, width: int = 832, height: int = 480) -> tuple[int, int]:
    """The Wan size of a preset name, or the custom ``width`` x ``height`` (checked)."""
    if target == CUSTOM:
        return check_size(width, "custom width"), check_size(height, "custom height")
    if target in PRESETS:
        return PRESETS[target]
    raise ValueError(f"unknown target {target!r}: pick one of {', '.join(TARGETS)}")


def orient(src_w: int, src_h: int, target_w: int, target_h: int, orientation: str = "auto") -> tuple[int, int]:
    """``auto`` swaps the target when the image is portrait and the target landscape, or the reverse.
    ``as target`` (also spelt ``as-target``, as on the command line) keeps it."""
    orientation = _choice("orientation", str(orientation).replace("-", " "), ORIENTATIONS)
    if orientation == "auto" and (src_h > src_w and target_w > target_h or src_w > src_h and target_h > target_w):
        return target_h, target_w
    return target_w, target_h


def official_area_size(src_w: int, src_h: int, max_area: int) -> tuple[int, int]:
    """Wan2.1 ``image2video.py``: keep the aspect, area ~ ``max_area``, sides floored to multiples of 16."""
    aspect_ratio = src_h / src_w
    lat_h = round(math.sqrt(max_area * aspect_ratio) // 8 // 2 * 2)
    lat_w = round(math.sqrt(max_area / aspect_ratio) // 8 // 2 * 2)
    if lat_h == 0 or lat_w == 0:
        raise ValueError(f"official_area: a {src_w}x{src_h} image is too narrow for a {max_area}-pixel frame "
                         f"(one side would be 0); use crop or pad")
    return lat_w * 8, lat_h * 8


def _anchor_offset(free: int, anchor: str, low: str, high: str) -> int:
    # ``low``/``high`` are the anchors that pin this axis to its start/end; others centre it.
    if anchor == low:
        return 0
    if anchor == high:
        return free
    return free // 2


def crop_box(src_w: int, src_h: int, out_w: int, out_h: int, anchor: str = "center") -> tuple[int, int, int, int]:
    """The largest source rectangle [x, y, w, h] with the output's aspect (rounded to whole pixels), at the anchor."""
    if src_w * out_h >= src_h * out_w:  # source wider: full height, crop the sides
        h = src_h
        w = min(src_w, max(1, round(src_h * out_w / out_h)))
    else:
        w = src_w
        h = min(src_h, max(1, round(src_w * out_h / out_w)))
    x = _anchor_offset(src_w - w, anchor, "left", "right")
    y = _anchor_offset(src_h - h, anchor, "top", "bottom")
    return x, y, w, h


def content_box(src_w: int, src_h: int, out_w: int, out_h: int, anchor: str = "center") -> tuple[int, int, int, int]:
    """Where the whole image lands inside the output for ``pad``: [x, y, w, h] in output pixels."""
    if src_w * out_h >= src_h * out_w:  # source wider: fills the width, bars above/below
        w = out_w
        h = min(out_h, max(1, round(src_h * out_w / src_w)))
    else:
        h = out_h
        w = min(out_w, max(1, round(src_w * out_h / src_h)))
    x = _anchor_offset(out_w - w, anchor, "left", "right")
    y = _anchor_offset(out_h - h, anchor, "top", "bottom")
    return x, y, w, h


def _aspect_error(w: int, h: int, target_w: int, target_h: int) -> Fraction:
    # Exact ratio >= 1 between the two aspects, so ties are real ties.
    a, b = w * target_h, h * target_w
    return Fraction(max(a, b), min(a, b))


def stage1_size(target_w: int, target_h: int) -> tuple[int, int]:
    """The stage-1 (SDXL / Illustrious) size for a Wan target: multiples of 64, area within 10 % of
    1024x1024, the aspect closest to the target's (ties: area closest to 1024^2, then the smaller width).
    832x480 -> 1344x768, so stage 1 renders at a native size and the bridge only scales down."""
    target_w, target_h = check_size(target_w, "target width"), check_size(target_h, "target height")
    lo, hi = STAGE1_AREA * (1 - STAGE1_AREA_TOLERANCE), STAGE1_AREA * (1 + STAGE1_AREA_TOLERANCE)
    best = None
    for h in range(STAGE1_STEP, STAGE1_MAX_SIDE + 1, STAGE1_STEP):
        # For each height only the widths next to the ideal one can win.
        ideal = h * target_w / target_h
        for w in {max(STAGE1_STEP, math.floor(ideal / STAGE1_STEP) * STAGE1_STEP),
                  min(STAGE1_MAX_SIDE, math.ceil(ideal / STAGE1_STEP) * STAGE1_STEP)}:
            if not lo <= w * h <= hi:
                continue
            key = (_aspect_error(w, h, target_w, target_h), abs(w * h - STAGE1_AREA), w)
            if best is None or key < best[0]:
                best = (key, (w, h))
    if best is None:
        raise ValueError(f"no stage-1 size near 1 megapixel for a {target_w}x{target_h} target")
    return best[1]


def plan_details(src_w: int, src_h: int, target_w: int, target_h: int, fit: str = "crop",
                 orientation: str = "auto", anchor: str = "center") -> dict:
    """Everything the bridge will do, JSON-able: the CLI's keys (see ``plan``; ``stage1`` is the
    Stage Plan size for the oriented target, also under official_area) plus
    ``source`` [w, h], ``target`` [w, h] after orientation, ``swapped``, ``fit``, ``anchor``,
    ``scale_xy`` [sx, sy] and ``content`` [x, y, w, h]: where the image lands in the output."""
    src_w, src_h = check_source(src_w, src_h)
    target_w, target_h = check_size(target_w, "target width"), check_size(target_h, "target height")
    _choice("fit", fit, FITS)
    _choice("anchor", anchor, ANCHORS)
    tw, th = orient(src_w, src_h, target_w, target_h, orientation)
    crop = None
    if fit == "official_area":
        out_w, out_h = official_area_size(src_w, src_h, target_w * target_h)
        region = (src_w, src_h)
        content = [0, 0, out_w, out_h]
    elif fit == "crop":
        out_w, out_h = tw, th
        crop = list(crop_box(src_w, src_h, out_w, out_h, anchor))
        region = (crop[2], crop[3])
        content = [0, 0, out_w, out_h]
    elif fit == "pad":
        out_w, out_h = tw, th
        content = list(content_box(src_w, src_h, out_w, out_h, anchor))
        region = (src_w, src_h)
    else:  # stretch
        out_w, out_h = tw, th
        region = (src_w, src_h)
        content = [0, 0, out_w, out_h]
    sx, sy = content[2] / region[0], content[3] / region[1]
    scale = max(sx, sy)
    s1w, s1h = stage1_size(tw, th)  # for the target, as the Stage Plan node gives it
    return {
        "width": out_w,
        "height": out_h,
        "scale": round(scale, 6),
        "upscaled": scale > 1,
        "crop": crop,
        "stage1": {"width": s1w, "height": s1h},
        "source": [src_w, src_h],
        "target": [tw, th],
        "swapped": (tw, th) != (target_w, target_h),
        "fit": fit,
        "anchor": anchor,
        "scale_xy": [round(sx, 6), round(sy, 6)],
        "content": content,
    }


PLAN_KEYS = ("width", "height", "scale", "upscaled", "crop", "stage1")


def plan(src_w: int, src_h: int, target_w: int, target_h: int, fit: str = "crop",
         orientation: str = "auto", anchor: str = "center") -> dict:
    """``{"width", "height", "scale", "upscaled", "crop": [x, y, w, h] | None, "stage1": {"width", "height"}}``
    for a ``src_w`` x ``src_h`` image and a Wan target; ``crop`` is in source pixels."""
    details = plan_details(src_w, src_h, target_w, target_h, fit, orientation, anchor)
    return {k: details[k] for k in PLAN_KEYS}


def snap_length(frames: int) -> int:
    """The nearest 4n + 1 frame count (Wan's VAE packs 4 frames per latent after the first); ties go up; >= 1."""
    frames = max(1, int(frames))
    return 4 * math.floor((frames - 1) / 4 + 0.5) + 1


def clip_length(length_from: str = "frames", frames: int = 81, seconds: float = 5.0,
                fps: float = 16.0) -> tuple[int, str]:
    """(length, one line saying how it was reached) from a frame count or seconds x fps, snapped to 4n + 1."""
    _choice("length_from", length_from, ["frames", "seconds"])
    if length_from == "frames":
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
            raise ValueError(f"frames {frames!r} must be a whole number >= 1")
        asked, how = frames, f"{frames} frames"
    else:
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"seconds {seconds!r} must be a finite number >= 0")
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps {fps!r} must be a finite number > 0")
        asked = round(seconds * fps)
        how = f"{seconds:g} s x {fps:g} fps = {asked} frames"
    length = snap_length(asked)
    if length != asked:
        how += f" -> {length} (snapped to 4n+1)"
    return length, f"length: {how}"


def describe(details: dict, resample: str = "lanczos", pad_style: str = "color", pad_color: str = "#000000",
             length_note: str | None = None, batch: int = 1, channels: int = 3) -> str:
    """The node's UI text: the planned size, what was done, and an UPSCALED warning when it enlarges."""
    sw, sh = details["source"]
    w, h = details["width"], details["height"]
    sx, sy = details["scale_xy"]
    frames = f", {batch} images" if batch > 1 else ""
    lines = [f"Wan frame {w}x{h} from a {sw}x{sh} image{frames}"]
    if details["swapped"]:
        tw, th = details["target"]
        shape = "portrait" if sh > sw else "landscape"
        lines.append(f"orientation auto: target turned to {tw}x{th} to follow the {shape} image")
    fit, anchor = details["fit"], details["anchor"]
    if fit == "crop":
        x, y, cw, ch = details["crop"]
        lines.append(f"crop ({anchor}): kept source box x={x} y={y} w={cw} h={ch}, cut {sw - cw}x{sh - ch} px; "
                     f"scaled x{sx:.4g} with {resample}")
    elif fit == "pad":
        x, y, cw, ch = details["content"]
        fill = f"color {pad_color}" if pad_style == "color" else pad_style
        lines.append(f"pad ({anchor}, {fill}): whole image scaled x{sx:.4g} to {cw}x{ch} at x={x} y={y} "
                     f"with {resample}; padded {w - cw}x{h - ch} px; mask = image area")
    elif fit == "stretch":
        change = (sx / sy - 1) * 100
        lines.append(f"stretch: scaled x{sx:.4g} wide, x{sy:.4g} high (aspect changed {change:+.1f}%) with {resample}")
    else:
        tw, th = details["target"]
        lines.append(f"official_area (Wan2.1 repo rule): aspect kept, area of {tw}x{th} -> {w}x{h}"
                     f"{'' if (w, h) == (tw, th) else ' (differs from the target)'}; scaled x{sx:.4g} wide, "
                     f"x{sy:.4g} high with {resample}")
    if channels in (2, 4):
        lines.append(f"alpha composited on {pad_color}")
    if channels in (1, 2):
        lines.append("grey image converted to RGB")
    if length_note:
        lines.append(length_note)
    if details["upscaled"]:
        s1 = details["stage1"]
        lines.append(f"UPSCALED x{details['scale']:.4g}: the image is smaller than the frame, so detail is invented; "
                     f"render stage 1 at {s1['width']}x{s1['height']} (Stage Plan) to only scale down")
    return "\n".join(lines)
