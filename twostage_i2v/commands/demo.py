"""`demo`: workflow 1 (SDXL still -> Wan 2.1 I2V) on the built-in small random
models, through the real ComfyUI, writing an MP4 that carries the workflow.

The weights are random, so the video is noise: the demo proves that the whole
pipeline runs end to end through the real ComfyUI and this package's nodes.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

VERB = "demo"
HELP = ("Run workflow 1 (SDXL still -> Stage Bridge -> Wan 2.1 I2V from GGUF) on small random models through "
        "the real ComfyUI, at CPU sizes, and write an MP4 (workflow embedded) under output/.")


def add_arguments(p):
    p.add_argument("--base-dir", default=None, help="ComfyUI base directory to use (default: .venv/demo-base)")
    p.add_argument("--output", default=None, help="output folder (default: output/ in the repository)")
    p.add_argument("--frames", type=int, default=9, help="clip length in frames (4n+1; default 9)")
    p.add_argument("--steps", type=int, default=2, help="sampling steps of each stage (default 2)")
    p.add_argument("--size", type=int, nargs=2, default=(64, 64), metavar=("W", "H"),
                   help="video size, multiples of 16 (default 64 64)")
    p.add_argument("--still", type=int, nargs=2, default=(128, 128), metavar=("W", "H"),
                   help="stage-1 still size, multiples of 8 (default 128 128)")


def run(args) -> int:
    from ..headless import inprocess, demo_graph
    from ..workflow.build import SmallRun
    from ..workflow.validate import format_report, validate
    from ..headless.object_info import object_info_in_process

    started = time.monotonic()
    base = Path(args.base_dir or inprocess.REPO_ROOT / ".venv" / "demo-base")
    output = Path(args.output or inprocess.REPO_ROOT / "output")
    output.mkdir(parents=True, exist_ok=True)
    print(f"[demo] ComfyUI: {inprocess.comfyui_root()}", flush=True)
    with contextlib.redirect_stdout(sys.stderr):
        rt = inprocess.boot(base, output_dir=output)
    cache = demo_graph.tiny_models.cache_dir()
    todo = demo_graph.models_to_build()
    if todo:
        print(f"[demo] ComfyUI {rt.version} ready; building the small random models once into {cache} "
              f"(first run only, a few minutes): {', '.join(todo)}", flush=True)
    else:
        print(f"[demo] ComfyUI {rt.version} ready; small random models cached in {cache}", flush=True)
    t0 = time.monotonic()
    names = demo_graph.install_models(base)
    print(f"[demo] models ready in {time.monotonic() - t0:.1f} s: " + ", ".join(names.values()), flush=True)
    object_info = object_info_in_process(rt.nodes)
    small = SmallRun(still=tuple(args.still), video=tuple(args.size), frames=args.frames, steps=args.steps)
    ui, prompt = demo_graph.small_workflow(object_info, names, small)
    report = validate(ui, object_info)
    if not report.ok or report.missing_files:
        print(format_report(report, demo_graph.WORKFLOW), file=sys.stderr)
        return 1
    print(f"[demo] workflows/{demo_graph.WORKFLOW}.json with the model files swapped for the small ones and CPU "
          f"sizes instead of 832x480, 81 frames, 40 steps (hours on a CPU): still {small.still[0]}x{small.still[1]}, "
          f"video {small.video[0]}x{small.video[1]}, {small.frames} frames, {small.steps} steps per stage", flush=True)
    print(f"[demo] running {len(prompt)} nodes, both stages", flush=True)
    t0 = time.monotonic()
    with contextlib.redirect_stdout(sys.stderr):
        result = rt.run_prompt(prompt, extra_data={"extra_pnginfo": {"workflow": ui}})
    run_s = time.monotonic() - t0
    files = demo_graph.saved_files(result.outputs, output)
    videos = [f for f in files if f.suffix.lower() == ".mp4"]
    pngs = [f for f in files if f.suffix.lower() == ".png" and "first_frame" in f.name]
    if not videos:
        print("[demo] error: the graph ran but saved no video", file=sys.stderr)
        return 1
    from ..headless.api_graphs import decode_video

    frames, fps, w, h, _ = decode_video(videos[0])
    print(f"[demo] wrote {videos[0]} ({frames} frames, {fps:g} fps, {w}x{h}; the workflow is embedded)")
    if pngs:
        print(f"[demo] first frame with the workflow: {pngs[0]}")
    print(f"[demo] graph ran in {run_s:.1f} s; total wall time {time.monotonic() - started:.1f} s")
    print(f"[demo] read the workflow back: python -m twostage_i2v extract-workflow {videos[0]}")
    print()
    print("NOTE: the demo models have RANDOM weights, so the video is noise. The demo shows that workflow 1 runs")
    print("end to end (SDXL still -> Stage Bridge -> Wan 2.1 I2V from GGUF -> MP4) through ComfyUI and this package.")
    print("To make a real video, put these files in ComfyUI/models/<folder>/ (the workflow's 'Model files' note")
    print("lists them too):")
    for m in real_models():
        print(f"  {m.directory}/{m.name}\n      {m.url}")
    print(f"then start ComfyUI with this package in custom_nodes/, drag workflows/{demo_graph.WORKFLOW}.json onto it")
    print("(or pick it under Templates), and press Run. Check a setup first with:")
    print(f"  python -m twostage_i2v validate-workflow workflows/{demo_graph.WORKFLOW}.json --server http://127.0.0.1:8188")
    return 0


def real_models():
    """The real model files workflow 1 names, as its loader nodes list them."""
    from ..workflow.build import MODEL_FILES

    return [MODEL_FILES[k] for k in ("sdxl", "wan_480p", "umt5", "clip_vision", "vae")]
