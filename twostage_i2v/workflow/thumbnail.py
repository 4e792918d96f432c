"""A diagram of a UI workflow (groups, nodes with titles, links) for the
frontend's template browser, drawn with Pillow from the workflow JSON itself.
"""

from __future__ import annotations

import re

from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (30, 30, 30)
NODE_BODY = (53, 53, 53)
NODE_TITLE = (34, 34, 34)
NODE_OUTLINE = (90, 90, 90)
TEXT = (225, 225, 225)
NOTE_BODY = (102, 85, 51)
BYPASS_BODY = (90, 50, 110)
# The frontend's default link colours by type.
LINK_COLORS = {
    "MODEL": (179, 157, 219), "CLIP": (255, 213, 0), "VAE": (255, 110, 110), "CONDITIONING": (255, 169, 49),
    "LATENT": (255, 156, 249), "IMAGE": (100, 181, 246), "MASK": (129, 199, 132), "CLIP_VISION": (168, 218, 220),
    "CLIP_VISION_OUTPUT": (173, 118, 98), "VIDEO": (120, 200, 160), "INT": (120, 170, 210),
}
TITLE_H = 30
SLOT_H = 20


def _hex(color: str, default=(60, 60, 60)):
    c = (color or "").lstrip("#")
    if len(c) == 3:
        c = "".join(ch * 2 for ch in c)
    try:
        return tuple(int(c[i:i + 2], 16) for i in (0, 2, 4))
    except ValueError:
        return default


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _fit(draw, text: str, font, width: float) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def _bezier(p0, p3, steps: int = 24):
    dx = max(abs(p3[0] - p0[0]) * 0.5, 40)
    p1, p2 = (p0[0] + dx, p0[1]), (p3[0] - dx, p3[1])
    pts = []
    for i in range(steps + 1):
        t = i / steps
        a, b, c, d = (1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t ** 2, t ** 3
        pts.append((a * p0[0] + b * p1[0] + c * p2[0] + d * p3[0], a * p0[1] + b * p1[1] + c * p2[1] + d * p3[1]))
    return pts


def render(workflow: dict, title: str, size=(1024, 576), display_names: dict | None = None) -> Image.Image:
    """``display_names``: node type -> the name the frontend shows for nodes without a title."""
    nodes = workflow.get("nodes") or []
    boxes = [(n["pos"][0], n["pos"][1] - TITLE_H, n["pos"][0] + n["size"][0], n["pos"][1] + n["size"][1]) for n in nodes]
    boxes += [(g["bounding"][0], g["bounding"][1], g["bounding"][0] + g["bounding"][2], g["bounding"][1] + g["bounding"][3])
              for g in workflow.get("groups") or []]
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
    W, H = size
    header = 56
    margin = 16
    scale = min((W - 2 * margin) / (x1 - x0), (H - header - margin) / (y1 - y0))
    ox = margin + ((W - 2 * margin) - (x1 - x0) * scale) / 2 - x0 * scale
    oy = header + ((H - header - margin) - (y1 - y0) * scale) / 2 - y0 * scale

    def pt(x, y):
        return ox + x * scale, oy + y * scale

    img = Image.new("RGB", (W, H), BACKGROUND)
    draw = ImageDraw.Draw(img, "RGBA")
    big, small, tiny = _font(26), _font(max(9, int(13 * scale / 0.33))), _font(max(8, int(11 * scale / 0.33)))
    draw.text((margin, 14), title, font=big, fill=TEXT)

    for g in workflow.get("groups") or []:
        bx, by, bw, bh = g["bounding"]
        col = _hex(g.get("color"), (63, 120, 158))
        draw.rounded_rectangle([pt(bx, by), pt(bx + bw, by + bh)], radius=6, fill=col + (70,), outline=col + (200,))
        draw.text(pt(bx + 10, by + 8), _fit(draw, g["title"], small, bw * scale - 10), font=small, fill=TEXT)

    by_id = {n["id"]: n for n in nodes}
    for link in workflow.get("links") or []:
        lid, src, sslot, dst, dslot, ltype = link[:6]
        s, d = by_id.get(src), by_id.get(dst)
        if s is None or d is None:
            continue
        p0 = pt(s["pos"][0] + s["size"][0], s["pos"][1] + 12 + sslot * SLOT_H)
        p3 = pt(d["pos"][0], d["pos"][1] + 12 + dslot * SLOT_H)
        draw.line(_bezier(p0, p3), fill=LINK_COLORS.get(ltype, (160, 160, 160)) + (230,), width=max(2, int(4 * scale / 0.33)))

    for n in nodes:
        x, y = n["pos"]
        w, h = n["size"]
        note = n["type"] in ("Note", "MarkdownNote")
        body = NOTE_BODY if note else (BYPASS_BODY if n.get("mode") == 4 else _hex(n.get("bgcolor"), NODE_BODY))
        head = _hex(n.get("color"), NODE_TITLE)
        draw.rounded_rectangle([pt(x, y - TITLE_H), pt(x + w, y + h)], radius=5, fill=body + (255,),
                               outline=NODE_OUTLINE + (255,))
        draw.rectangle([pt(x, y - TITLE_H), pt(x + w, y)], fill=head + (255,))
        label = n.get("title") or (display_names or {}).get(n["type"]) or n["type"]
        tx, ty = pt(x + 8, y - TITLE_H + 6)
        draw.text((tx, ty), _fit(draw, label, small, w * scale - 10), font=small, fill=TEXT)
        if note:
            text = str((n.get("widgets_values") or [""])[0])
            text = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", text).replace("**", "").replace("`", "")
            lines = [ln.strip("#*- ").strip() for ln in text.splitlines() if ln.strip()]
            line_h = tiny.size + 3 if hasattr(tiny, "size") else 12
            cy = pt(x, y + 8)[1]
            for ln in lines:
                if cy + line_h > pt(x, y + h)[1]:
                    break
                draw.text((pt(x + 8, y)[0], cy), _fit(draw, ln, tiny, w * scale - 14), font=tiny, fill=TEXT)
                cy += line_h
    return img


def write_thumbnail(workflow: dict, title: str, path, size=(1024, 576), display_names: dict | None = None) -> None:
    img = render(workflow, title, size, display_names)
    # Fixed encoder settings so that a rebuild of an unchanged workflow writes the same bytes.
    img.save(path, format="JPEG", quality=88, optimize=True)
