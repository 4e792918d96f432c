"""Stage Bridge throughput vs ComfyUI's core ImageScale, same batch, same run.

    .venv/bin/python bench/bridge.py [--batch N] [--repeat R] [--json]

A batch of N 1344x768 RGB frames (SDXL's 16:9 bucket) goes to 832x480 with a
centre crop: core ``ImageScale`` (lanczos, crop "center": Pillow on 8-bit
images) against the bridge (fit crop, anchor center, lanczos: Pillow on float
planes). The bicubic pair (both torch) is measured too. Best of R interleaved
runs; ratio = bridge time / ImageScale time (below 1: the bridge is faster).
The max pixel difference between the two outputs is printed for reference
(they differ by 8-bit rounding and by ImageScale's crop being 1 px wider).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from twostage_i2v.bridge import geometry, pixels  # noqa: E402
from twostage_i2v.headless import inprocess

SRC_W, SRC_H, OUT_W, OUT_H = 1344, 768, 832, 480


def best_times(fns: dict, repeat: int) -> dict:
    """Best wall time of each function; runs are interleaved so load from other processes hits all alike."""
    results = {k: fn() for k, fn in fns.items()}  # warm-up, and the outputs to compare
    best = {k: float("inf") for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - start)
    return best, results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    logging.disable(logging.INFO)  # ComfyUI's start-up chatter
    runtime = inprocess.boot(Path(tempfile.mkdtemp(prefix="bench-bridge-")))
    logging.disable(logging.NOTSET)
    image_scale = runtime.node_class("ImageScale")()

    gen = torch.Generator().manual_seed(0)
    # Smooth content plus grain, like a render; values in [0, 1].
    y = torch.linspace(0, 1, SRC_H).view(1, SRC_H, 1, 1)
    x = torch.linspace(0, 1, SRC_W).view(1, 1, SRC_W, 1)
    base = torch.cat([x.expand(1, SRC_H, SRC_W, 1), y.expand(1, SRC_H, SRC_W, 1),
                      (0.5 + 0.4 * torch.sin(x * 40) * torch.cos(y * 25)).expand(1, SRC_H, SRC_W, 1)], -1)
    batch = (base + 0.03 * torch.randn(args.batch, SRC_H, SRC_W, 3, generator=gen)).clamp(0, 1)

    details = geometry.plan_details(SRC_W, SRC_H, OUT_W, OUT_H, "crop", "auto", "center")
    fns = {
        "bridge_lanczos": lambda: pixels.apply_plan(batch, details, "lanczos")[0],
        "imagescale_lanczos": lambda: image_scale.upscale(batch, "lanczos", OUT_W, OUT_H, "center")[0],
        "bridge_bicubic": lambda: pixels.apply_plan(batch, details, "bicubic")[0],
        "imagescale_bicubic": lambda: image_scale.upscale(batch, "bicubic", OUT_W, OUT_H, "center")[0],
    }
    best, outputs = best_times(fns, args.repeat)
    for k, out in outputs.items():
        assert tuple(out.shape) == (args.batch, OUT_H, OUT_W, 3), (k, out.shape)

    report = {"comfyui": runtime.version, "batch": args.batch, "source": f"{SRC_W}x{SRC_H}",
              "output": f"{OUT_W}x{OUT_H}", "crop_box": details["crop"], "threads": torch.get_num_threads()}
    for method in ("lanczos", "bicubic"):
        ours, core = best[f"bridge_{method}"], best[f"imagescale_{method}"]
        report[method] = {
            "bridge_s": round(ours, 4), "imagescale_s": round(core, 4),
            "bridge_frames_per_s": round(args.batch / ours, 1), "imagescale_frames_per_s": round(args.batch / core, 1),
            "ratio_bridge_over_imagescale": round(ours / core, 3),
            "max_abs_diff": round(float((outputs[f"bridge_{method}"] - outputs[f"imagescale_{method}"]).abs().max()),
                                  4),
        }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"ComfyUI {report['comfyui']}: {args.batch} x {SRC_W}x{SRC_H} -> {OUT_W}x{OUT_H}, centre crop "
              f"(bridge box {details['crop']}), best of {args.repeat}, {report['threads']} torch threads")
        for method in ("lanczos", "bicubic"):
            r = report[method]
            print(f"{method:8s} bridge {r['bridge_s'] * 1000:8.1f} ms ({r['bridge_frames_per_s']:6.1f} fr/s)   "
                  f"ImageScale {r['imagescale_s'] * 1000:8.1f} ms ({r['imagescale_frames_per_s']:6.1f} fr/s)   "
                  f"ratio {r['ratio_bridge_over_imagescale']:.3f}   max |diff| {r['max_abs_diff']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
