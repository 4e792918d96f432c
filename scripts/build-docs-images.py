"""Draw the pictures of the node help pages (web/docs/images/): what the Stage Bridge does to a
stage-1 image under each fit, made by the bridge's own geometry and pixel code.

    .venv/bin/python scripts/build-docs-images.py [--check]

--check writes nothing and exits 1 when a picture on disk differs from what would be drawn.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from twostage_i2v.bridge import geometry, pixels  # noqa: E402

OUT = ROOT / "web" / "docs" / "images"
PANEL_H = 240  # each picture: source on the left, Wan frame on the right, this high
GAP = 24
BOX = (240, 180, 76)  # the node panel's box colour (web/twostage_i2v.js)
# (file, source size, target, fit, pad_style): a landscape still and a portrait one.
CASES = (
    ("bridge_crop.png", (1024, 1024), (832, 480), "crop", "color"),
    ("bridge_crop_portrait.png", (768, 1344), (832, 480), "crop", "color"),
    ("bridge_pad.png", (768, 1344), (832, 480), "pad", "color"),
    ("bridge_pad_blur.png", (768, 1344), (832, 480), "pad", "blur"),
)


def sample_still(w: int, h: int) -> torch.Tensor:
    """A synthetic still ([1, H, W, 3]): sky, ground and a figure in the middle, so crops read at a glance."""
    y = torch.linspace(0, 1, h).view(h, 1, 1)
    x = torch.linspace(0, 1, w).view(1, w, 1)
    sky = torch.tensor([0.45, 0.65, 0.95]) * (1 - 0.4 * y) + torch.tensor([0.0, 0.0, 0.0]) * x
    img = sky.expand(h, w, 3).clone()
    img[int(h * 0.7):] = torch.tensor([0.35, 0.6, 0.3])
    cx, cy, r = w // 2, int(h * 0.45), min(w, h) // 6
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    img[((xx - cx) ** 2 + (yy - cy) ** 2) < r * r] = torch.tensor([0.95, 0.8, 0.7])
    img[(abs(xx - cx) < r // 2) & (yy > cy + r) & (yy < cy + 3 * r)] = torch.tensor([0.85, 0.3, 0.35])
    for k in range(1, 8):  # vertical marks every eighth, to see what a crop cuts
        img[:, min(w - 1, k * w // 8), :] = 0.2
    return img.unsqueeze(0)


def to_pil(t: torch.Tensor) -> Image.Image:
    return Image.fromarray((t[0].clamp(0, 1) * 255).round().to(torch.uint8).numpy())


def draw_case(source_size, target, fit, pad_style) -> Image.Image:
    sw, sh = source_size
    details = geometry.plan_details(sw, sh, *target, fit, "as target")
    still = sample_still(sw, sh)
    frame, _ = pixels.apply_plan(still, details, "bilinear", pad_style, "#000000")
    k_src = PANEL_H / sh
    src = to_pil(still).resize((round(sw * k_src), PANEL_H), Image.BILINEAR)
    draw = ImageDraw.Draw(src, "RGBA")
    if fit == "crop":
        x, y, w, h = details["crop"]
        box = [x * k_src, y * k_src, (x + w) * k_src - 1, (y + h) * k_src - 1]
        draw.rectangle([0, 0, src.width, box[1]], fill=(0, 0, 0, 140))
        draw.rectangle([0, box[3], src.width, src.height], fill=(0, 0, 0, 140))
        draw.rectangle([0, box[1], box[0], box[3]], fill=(0, 0, 0, 140))
        draw.rectangle([box[2], box[1], src.width, box[3]], fill=(0, 0, 0, 140))
        draw.rectangle(box, outline=BOX, width=3)
    k_out = PANEL_H / details["height"]
    out = to_pil(frame).resize((round(details["width"] * k_out), PANEL_H), Image.BILINEAR)
    if fit == "pad":
        x, y, w, h = details["content"]
        ImageDraw.Draw(out).rectangle([x * k_out, y * k_out, (x + w) * k_out - 1, (y + h) * k_out - 1],
                                      outline=BOX, width=3)
    canvas = Image.new("RGB", (src.width + GAP + out.width, PANEL_H), (34, 34, 34))
    canvas.paste(src, (0, 0))
    canvas.paste(out, (src.width + GAP, 0))
    arrow = ImageDraw.Draw(canvas)
    mid, x0 = PANEL_H // 2, src.width + 4
    arrow.polygon([(x0, mid - 8), (x0 + GAP - 8, mid), (x0, mid + 8)], fill=(220, 220, 220))
    return canvas


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the files on disk, write nothing")
    args = ap.parse_args()
    stale = []
    for name, size, target, fit, pad_style in CASES:
        data = png_bytes(draw_case(size, target, fit, pad_style))
        path = OUT / name
        if args.check:
            if not path.is_file() or path.read_bytes() != data:
                stale.append(str(path.relative_to(ROOT)))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print("out of date: " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
