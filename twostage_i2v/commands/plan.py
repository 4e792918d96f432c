"""`plan WxH --target WxH --fit MODE [--orientation auto|as-target] [--anchor A] [--json]`."""

from __future__ import annotations

import json
import sys

from ..bridge import geometry

VERB = "plan"
HELP = ("Show what the Stage Bridge does to a WxH stage-1 image for a Wan 2.1 I2V target: output size, scale, "
        "crop box in source pixels, whether it upscales, and the stage-1 size to render at instead.")


def add_arguments(p):
    p.add_argument("size", help="the stage-1 image size, WIDTHxHEIGHT (e.g. 1216x832)")
    p.add_argument("--target", default="832x480",
                   help="Wan frame WIDTHxHEIGHT, multiples of 16 (default 832x480; 480x832, 624x624, 1280x720, ...)")
    p.add_argument("--fit", default="crop", choices=geometry.FITS, help="default: crop")
    p.add_argument("--orientation", default="auto", choices=["auto", "as-target"],
                   help="auto: turn the target to follow a portrait/landscape image (default); as-target: keep it")
    p.add_argument("--anchor", default="center", choices=geometry.ANCHORS, help="crop anchor / pad placement")
    p.add_argument("--json", action="store_true",
                   help='print {"width", "height", "scale", "upscaled", "crop": [x, y, w, h] or null, '
                        '"stage1": {"width", "height"}}')


def run(args) -> int:
    try:
        src_w, src_h = geometry.parse_size(args.size, "image size")
        tw, th = geometry.parse_size(args.target, "--target")
        orientation = "as target" if args.orientation == "as-target" else "auto"
        details = geometry.plan_details(src_w, src_h, tw, th, args.fit, orientation, args.anchor)
    except ValueError as e:
        print(f"plan: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({k: details[k] for k in geometry.PLAN_KEYS}))
    else:
        print(geometry.describe(details))
        s1 = details["stage1"]
        print(f"stage 1 for this target: {s1['width']}x{s1['height']}")
    return 0
