"""Sampling-step time of a Wan 2.1 I2V model: GGUF (our loader) vs native fp32 safetensors.

    .venv/bin/python bench/step.py [--dim 128 --layers 2] [--recipes F32,Q8_0,Q4_K_M]
                                   [--frames 3 --size 8] [--rounds 5] [--threads 2] [--json]

Boots the real ComfyUI in-process (twostage_i2v.headless.inprocess), loads the native
model with the core UNETLoader node and each GGUF conversion with 'Load Wan
I2V Model (GGUF)', and times one denoising step, ``model.apply_model`` (the
diffusion model's forward, as KSampler calls it), on the same inputs. Models
are timed in turn, round after round, so load from other processes hits all
alike; the best round counts. Per model: s/step, ratio to native, and the
share of the step spent in dequantization (our dequantize, timed in place).

Default: the tiny test model (dim 128, 2 layers), where the step is mostly
overhead. ``--dim 1024 --layers 4`` builds a larger Wan-shaped random model
where weight handling shows (its K-quant rows are 256-wide; in the tiny one
Q4_K falls back to Q5_0). Files go to a temporary ComfyUI base directory,
or ``--keep DIR`` to reuse them between runs.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from twostage_i2v.headless import inprocess  # noqa: E402
from twostage_i2v.tiny import models as tiny_models

GGUF_LOADER = "TwoStageI2V_WanI2VLoaderGGUF"


def wan_config(dim: int, layers: int, ffn_dim: int | None = None, heads: int | None = None) -> dict:
    """WanModel arguments for a Wan-shaped I2V model (the tiny test model at dim 128, 2 layers)."""
    if (dim, layers) == (tiny_models.WAN_TINY["dim"], tiny_models.WAN_TINY["num_layers"]) and not ffn_dim and not heads:
        return dict(tiny_models.WAN_TINY)
    heads = heads or max(1, dim // 128)  # Wan: 128-wide heads (14B: 5120 / 40)
    if dim % heads:
        raise SystemExit(f"error: --dim {dim} is not a multiple of --heads {heads}")
    return dict(tiny_models.WAN_TINY, dim=dim, num_layers=layers, num_heads=heads, ffn_dim=ffn_dim or 4 * dim)


def build_files(folder: Path, config: dict, recipes: list[str]) -> dict[str, Path]:
    """The fp32 safetensors model and its GGUF conversions (skipped when present)."""
    from safetensors.torch import load_file, save_file

    from twostage_i2v.models.wan_convert import write_model_gguf

    tag = f"d{config['dim']}_l{config['num_layers']}_f{config['ffn_dim']}_h{config['num_heads']}"
    native = folder / f"wan_bench_{tag}_fp32.safetensors"
    if not native.exists():
        print(f"building {native.name} ...", file=sys.stderr, flush=True)
        save_file(tiny_models.randomise(tiny_models.wan_shapes("i2v", config), seed=1), str(native))
    files = {"native": native}
    sd = None
    for recipe in recipes:
        path = folder / f"wan_bench_{tag}_{recipe}.gguf"
        if not path.exists():
            print(f"converting to {path.name} ...", file=sys.stderr, flush=True)
            sd = sd if sd is not None else load_file(str(native))
            write_model_gguf(path, sd, recipe)
        files[recipe] = path
    return files


def step_inputs(frames: int, size: int, text_tokens: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return dict(
        x=torch.randn(1, 16, frames, size, size, generator=g),
        t=torch.tensor([0.7]),
        c_concat=torch.randn(1, 20, frames, size, size, generator=g),
        c_crossattn=torch.randn(1, text_tokens, 4096, generator=g),
        clip_fea=torch.randn(1, 257, 1280, generator=g),
    )


class DequantClock:
    """Wraps the dequantize that ComfyUI's copy of this package calls, summing its time."""

    def __init__(self, module):
        self.module, self.inner, self.seconds = module, module.dequantize, 0.0

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return self.inner(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        module.dequantize = timed

    def restore(self):
        self.module.dequantize = self.inner


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dim", type=int, default=tiny_models.WAN_TINY["dim"])
    p.add_argument("--layers", type=int, default=tiny_models.WAN_TINY["num_layers"])
    p.add_argument("--ffn-dim", type=int, default=None, help="default 4 x dim (tiny model: 256)")
    p.add_argument("--heads", type=int, default=None, help="default dim / 128")
    p.add_argument("--recipes", default="F32,Q8_0,Q4_K_M", help="GGUF --type recipes to compare with native")
    p.add_argument("--frames", type=int, default=3, help="latent frames (3 = a 9-frame video)")
    p.add_argument("--size", type=int, default=8, help="latent height and width (8 = 64 px)")
    p.add_argument("--text-tokens", type=int, default=16)
    p.add_argument("--rounds", type=int, default=5, help="timed steps per model; the best counts")
    p.add_argument("--threads", type=int, default=2, help="torch threads (the goals are for 2)")
    p.add_argument("--keep", type=Path, default=None, help="ComfyUI base dir to keep the model files in")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    base = args.keep or Path(tempfile.mkdtemp(prefix="twostage-step-"))
    runtime = inprocess.boot(base)
    import comfy.model_management as mm

    config = wan_config(args.dim, args.layers, args.ffn_dim, args.heads)
    folder = base / "models" / "diffusion_models"
    folder.mkdir(parents=True, exist_ok=True)
    files = build_files(folder, config, [r for r in args.recipes.split(",") if r])
    tiny_models._forget_cached_listings()

    models = {"native": runtime.nodes.UNETLoader().load_unet(files["native"].name, "default")[0]}
    for key, path in files.items():
        if key != "native":
            models[key] = runtime.node_class(GGUF_LOADER).execute(path.name).result[0]

    inputs = step_inputs(args.frames, args.size, args.text_tokens)
    clock = DequantClock(runtime.core("gguf.dequant"))
    best = {k: math.inf for k in models}
    dequant_s = {k: 0.0 for k in models}
    outputs = {}
    try:
        mm.load_models_gpu(list(models.values()), force_full_load=True)
        with torch.no_grad():
            for r in range(args.rounds + 1):  # round 0 warms up
                for key, patcher in models.items():
                    mm.load_models_gpu([patcher], force_full_load=True)
                    clock.seconds = 0.0
                    start = time.perf_counter()
                    out = patcher.model.apply_model(
                        inputs["x"], inputs["t"], c_concat=inputs["c_concat"], c_crossattn=inputs["c_crossattn"],
                        clip_fea=inputs["clip_fea"],
                    )
                    elapsed = time.perf_counter() - start
                    if r and elapsed < best[key]:
                        best[key], dequant_s[key] = elapsed, clock.seconds
                    outputs[key] = out.float()
    finally:
        clock.restore()
        mm.unload_all_models()

    ref = outputs["native"]
    rows = []
    for key in models:
        err = float((outputs[key] - ref).abs().max() / ref.abs().max())
        rows.append({
            "model": key, "s_per_step": best[key], "ratio_to_native": best[key] / best["native"],
            "dequant_share": dequant_s[key] / best[key], "rel_max_err": err,
        })
    n_params = sum(math.prod(s) for s in tiny_models.wan_shapes("i2v", config).values())
    if args.json:
        print(json.dumps([{k: (round(v, 6) if isinstance(v, float) else v) for k, v in r.items()} for r in rows]))
    else:
        print(f"Wan I2V dim {config['dim']}, {config['num_layers']} layers, ffn {config['ffn_dim']}, "
              f"{config['num_heads']} heads ({n_params / 1e6:.1f} M weights); latent {args.frames}x{args.size}x{args.size}, "
              f"{args.text_tokens} text tokens; torch threads {torch.get_num_threads()}; best of {args.rounds}")
        print(f"{'model':8} {'s/step':>9} {'x native':>9} {'dequant':>8} {'max err':>9}")
        for r in rows:
            print(f"{r['model']:8} {r['s_per_step']:9.4f} {r['ratio_to_native']:9.2f} "
                  f"{r['dequant_share']:8.0%} {r['rel_max_err']:9.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
