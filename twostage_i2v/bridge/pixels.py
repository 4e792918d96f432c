"""Stage Bridge pixels: turn a ComfyUI IMAGE batch into the planned Wan frame.

Geometry comes from ``bridge.geometry.plan_details``; this module only moves pixels.

Input: ``[B, H, W, C]`` (or ``[H, W, C]``) float, C = 1 (grey), 2 (grey + alpha),
3 (RGB) or 4 (RGBA). Grey is repeated to RGB. Alpha is composited on the pad
colour *before* any resampling, in every fit mode (crop and stretch too: Wan
has no alpha, and an edge of a transparent cut-out must not turn into a dark
fringe); the pad colour defaults to black. Empty images, NaN/inf values and
more than 4 channels raise ``ValueError``. Output: ``[B, H, W, 3]`` float32 in
[0, 1] and a ``[B, H, W]`` mask, 1 where the image is and 0 on padding.

Resamplers:

- ``lanczos``: Pillow's Lanczos (a = 3) on 32-bit float planes, one plane per
  frame and channel (threads), so there is no 8-bit rounding; the crop box is
  Pillow's ``box``, resampled in place: the filter may read the source pixels
  just outside the box, so the cut has no edge artefact. On RGB images
  Pillow's 8-bit path rounds and clips between its two passes; the result
  here is within 2/255 of it unless that clipping kicks in (hard ringing).
- ``bicubic`` / ``bilinear`` / ``area`` resample the cut-out box.
- ``bicubic`` / ``bilinear``: ``torch.nn.functional.interpolate`` with
  ``antialias=True`` (``align_corners=False``): the filter widens when an axis
  shrinks, so Wan's 1.6x reduction from SDXL sizes does not alias; in both
  directions this equals Pillow's BICUBIC (a = -0.5) / BILINEAR on float planes
  to float rounding, and it stays vectorised over the batch.
- ``area``: ``interpolate(mode="area")``: box averaging; for enlargements it
  degenerates to nearest neighbour.

Results are clamped to [0, 1] (Lanczos and bicubic overshoot at edges).

Pad styles: ``color`` fills with the pad colour; ``edge`` repeats the image's
border pixels outward; ``blur`` fills with a blurred, cover-cropped copy of the
image (Gaussian, sigma = 1/32 of the frame's long side, computed at 1/4
resolution and smoothly enlarged).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .geometry import crop_box

RESAMPLERS = ["lanczos", "bicubic", "area", "bilinear"]
PAD_STYLES = ["color", "edge", "blur"]
BLUR_SIGMA_FRACTION = 1 / 32
BLUR_REDUCTION = 4


def parse_color(text: str) -> tuple[float, float, float]:
    """``"#RRGGBB"`` or ``"#RGB"`` (``#`` optional) -> (r, g, b) in [0, 1]."""
    s = str(text).strip().lstrip("#")
    if len(s) == 3:
        s = "".join(c * 2 for c in s)
    try:
        if len(s) != 6:
            raise ValueError
        rgb = tuple(int(s[i:i + 2], 16) / 255 for i in (0, 2, 4))
    except ValueError:
        raise ValueError(f"pad colour {text!r} is not a hex colour: write #RRGGBB, e.g. #000000 or #808080") from None
    return rgb


def check_resample(method: str) -> None:
    if method not in RESAMPLERS:
        raise ValueError(f"unknown resample {method!r}: pick one of {', '.join(RESAMPLERS)}")


def pad_rgb(pad_style: str, pad_color: str | tuple) -> tuple[float, float, float]:
    """The pad colour as (r, g, b) in [0, 1], once the pad style is known to be one of ``PAD_STYLES``."""
    if pad_style not in PAD_STYLES:
        raise ValueError(f"unknown pad_style {pad_style!r}: pick one of {', '.join(PAD_STYLES)}")
    return parse_color(pad_color) if isinstance(pad_color, str) else tuple(pad_color)


def check_image(image: torch.Tensor) -> torch.Tensor:
    """A ``[B, H, W, C]`` float32 view of ``image``, or a ValueError that says what is wrong with it."""
    if not isinstance(image, torch.Tensor):
        raise ValueError(f"image must be a torch tensor [batch, height, width, channels], got {type(image).__name__}")
    if image.ndim == 3:
        image = image.unsqueeze(0)
    if image.ndim != 4:
        raise ValueError(f"image has shape {tuple(image.shape)}: expected [batch, height, width, channels]")
    b, h, w, c = image.shape
    if 0 in (b, h, w, c):
        raise ValueError(f"image is empty (shape {tuple(image.shape)}: batch x height x width x channels has a 0)")
    if c > 4:
        raise ValueError(f"image has {c} channels: the bridge takes 1 (grey), 2 (grey+alpha), 3 (RGB) or 4 (RGBA); "
                         f"is the tensor [batch, height, width, channels]?")
    image = image.float()
    bad = ~torch.isfinite(image)
    if bad.any():
        n_nan = int(torch.isnan(image).sum())
        raise ValueError(f"image has {n_nan} NaN and {int(bad.sum()) - n_nan} infinite values: "
                         f"the node before the bridge produced broken pixels")
    return image


def to_rgb(image: torch.Tensor, pad_color=(0.0, 0.0, 0.0)) -> torch.Tensor:
    """``[B, H, W, 3]``: grey repeated to RGB, alpha composited on ``pad_color``."""
    image = check_image(image)
    c = image.shape[-1]
    if c in (1, 2):
        colour, alpha = image[..., :1].expand(*image.shape[:-1], 3), image[..., 1:] if c == 2 else None
    else:
        colour, alpha = image[..., :3], image[..., 3:] if c == 4 else None
    if alpha is None:
        return colour.contiguous()
    alpha = alpha.clamp(0, 1)
    bg = torch.tensor(pad_color, dtype=colour.dtype, device=colour.device)
    return colour * alpha + bg * (1 - alpha)


def _lanczos_plane(plane: np.ndarray, size, box) -> np.ndarray:
    return np.asarray(Image.fromarray(plane).resize(size, Image.Resampling.LANCZOS, box=box))


def _lanczos(x: torch.Tensor, out_w: int, out_h: int, box) -> torch.Tensor:
    # Pillow's float planes keep full precision; it releases the GIL while resampling,
    # so planes run in parallel threads.
    arr = x.detach().cpu().numpy()
    b, c = arr.shape[:2]
    planes = [np.ascontiguousarray(arr[i, j]) for i in range(b) for j in range(c)]
    pil_box = (box[0], box[1], box[0] + box[2], box[1] + box[3])
    workers = min(len(planes), os.cpu_count() or 1)
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            out = list(pool.map(lambda p: _lanczos_plane(p, (out_w, out_h), pil_box), planes))
    else:
        out = [_lanczos_plane(p, (out_w, out_h), pil_box) for p in planes]
    return torch.from_numpy(np.stack(out).reshape(b, c, out_h, out_w)).to(x.device)


def resize(x: torch.Tensor, out_w: int, out_h: int, method: str = "lanczos", box=None) -> torch.Tensor:
    """Resize the ``box`` [x, y, w, h] (default: all) of a ``[B, C, H, W]`` batch to ``out_w`` x ``out_h``."""
    check_resample(method)
    box = tuple(box) if box is not None else (0, 0, x.shape[-1], x.shape[-2])
    if method == "lanczos":
        out = _lanczos(x, out_w, out_h, box)
    else:
        bx, by, bw, bh = box
        region = x[..., by:by + bh, bx:bx + bw]
        if method == "area":
            out = F.interpolate(region, size=(out_h, out_w), mode="area")
        else:
            out = F.interpolate(region, size=(out_h, out_w), mode=method, align_corners=False, antialias=True)
    return out.clamp_(0, 1)


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    # Replicate padding has no size limit (reflect needs the pad below the side).
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def blurred_background(x: torch.Tensor, out_w: int, out_h: int) -> torch.Tensor:
    """A cover-cropped, heavily blurred copy of ``x`` ([B, C, H, W]) at ``out_w`` x ``out_h``."""
    small_w, small_h = max(1, math.ceil(out_w / BLUR_REDUCTION)), max(1, math.ceil(out_h / BLUR_REDUCTION))
    box = crop_box(x.shape[-1], x.shape[-2], out_w, out_h)
    small = resize(x, small_w, small_h, "bilinear", box)
    sigma = max(out_w, out_h) * BLUR_SIGMA_FRACTION / BLUR_REDUCTION
    small = _gaussian_blur(small, sigma)
    return F.interpolate(small, size=(out_h, out_w), mode="bilinear", align_corners=False)


def apply_plan(image: torch.Tensor, details: dict, resample: str = "lanczos", pad_style: str = "color",
               pad_color: str | tuple = "#000000") -> tuple[torch.Tensor, torch.Tensor]:
    """Carry out ``bridge.geometry.plan_details(...)`` on ``image``: (``[B, H, W, 3]`` in [0, 1], ``[B, H, W]`` mask)."""
    color = pad_rgb(pad_style, pad_color)
    rgb = to_rgb(image, color)
    b, h, w, _ = rgb.shape
    if [w, h] != list(details["source"]):
        raise ValueError(f"the plan is for a {details['source'][0]}x{details['source'][1]} image, "
                         f"this one is {w}x{h}")
    out_w, out_h = details["width"], details["height"]
    x = rgb.movedim(-1, 1)
    mask = torch.zeros((b, out_h, out_w), dtype=torch.float32, device=x.device)
    fit = details["fit"]
    if fit in ("crop", "stretch", "official_area"):
        out = resize(x, out_w, out_h, resample, details["crop"])
        mask.fill_(1.0)
    elif fit == "pad":
        cx, cy, cw, ch = details["content"]
        content = resize(x, cw, ch, resample)
        left, top, right, bottom = cx, cy, out_w - cx - cw, out_h - cy - ch
        if pad_style == "edge":
            out = F.pad(content, (left, right, top, bottom), mode="replicate")
        else:
            if pad_style == "blur":
                out = blurred_background(x, out_w, out_h)
            else:
                out = torch.tensor(color, dtype=x.dtype, device=x.device).view(1, 3, 1, 1).repeat(b, 1, out_h, out_w)
            out[..., cy:cy + ch, cx:cx + cw] = content
        mask[:, cy:cy + ch, cx:cx + cw] = 1.0
    else:
        raise ValueError(f"unknown fit {fit!r}")
    return out.movedim(1, -1).contiguous(), mask

