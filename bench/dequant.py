"""Dequantization speed: twostage_i2v.gguf.dequant vs gguf-py's numpy reference.

    .venv/bin/python bench/dequant.py [--json] [--device cpu|cuda] [--dtype bf16|fp16|fp32]
                                      [--values N] [--types Q4_K,Q8_0] [--repeat R] [--compiled]

Per type: random valid blocks of N values (rows of 4096 values), best of R
runs. GB/s counts output bytes (values * itemsize of --dtype) for both our
dequantize and gguf-py's (which always makes float32; its time is still
counted against the same byte count), their ratio, and a plain torch copy of
an output-sized tensor (clone: allocation included, as for dequantize) as the
memory ceiling, all measured in the same run, runs interleaved.

``goal``/``met``: issue 9's goal for the ratio (CPU, 2 threads, bf16 output).
``--compiled`` also times the torch.compile'd float stage (what
TWOSTAGE_I2V_COMPILED_DEQUANT=1 turns on; CPU only): ``gbps``/``ratio`` are then
that path's and ``eager_gbps``/``eager_ratio`` the default eager path's. The
one-off compile happens in the warm-up, outside the timing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import gguf
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from twostage_i2v.gguf.dequant import dequantize  # noqa: E402
from twostage_i2v.gguf.ggml_types import TYPES, ggml_type, random_blocks  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
ROW_VALUES = 4096
# issue 9: ratio to gguf-py's numpy, CPU, 2 threads, bf16 output
GOALS = {"Q8_0": 7.5, "Q4_K": 5, "Q5_K": 3.4, "Q6_K": 3.3, "Q3_K": 2.2, "Q2_K": 1.5,
         "Q4_0": 1.7, "Q5_0": 1.5, "Q5_1": 1.4, "Q4_1": 1}


def best_times(fns: dict, repeat: int, sync) -> dict:
    """Best wall time of each function; runs are interleaved so a burst of load
    from other processes hits all of them alike rather than one."""
    for fn in fns.values():  # warm-up (lookup tables, allocator)
        fn()
    sync()
    best = {k: float("inf") for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            start = time.perf_counter()
            fn()
            sync()
            best[k] = min(best[k], time.perf_counter() - start)
    return best


def bench_type(qtype, values: int, dtype: torch.dtype, device: str, repeat: int, gen: torch.Generator,
               compiled: bool = False) -> dict:
    t = ggml_type(qtype)
    n_blocks = values // t.block_size
    values = n_blocks * t.block_size
    cols = ROW_VALUES if values % ROW_VALUES == 0 else values
    shape = (values // cols, cols)
    raw = random_blocks(qtype, n_blocks, gen).view(shape[0], -1)
    raw_np = raw.numpy()
    data = raw.to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    out_bytes = values * torch.empty((), dtype=dtype).element_size()

    src = torch.ones(shape, dtype=dtype, device=device)
    fns = {
        "ours": lambda: dequantize(data, qtype, shape, dtype, compiled=False),
        "numpy": lambda: gguf.quants.dequantize(raw_np, t.qtype),
        "copy": lambda: src.clone(),
    }
    if compiled:
        fns["compiled"] = lambda: dequantize(data, qtype, shape, dtype, compiled=True)
    best = best_times(fns, repeat, sync)
    ref, copy = best["numpy"], best["copy"]
    ours = best["compiled" if compiled else "ours"]
    row = {
        "type": t.name,
        "gbps": out_bytes / ours / 1e9,
        "numpy_gbps": out_bytes / ref / 1e9,
        "ratio": ref / ours,
        "copy_gbps": out_bytes / copy / 1e9,
    }
    if compiled:
        row.update(eager_gbps=out_bytes / best["ours"] / 1e9, eager_ratio=ref / best["ours"])
    if t.name in GOALS:
        row.update(goal=GOALS[t.name], met=row["ratio"] >= GOALS[t.name])
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    p.add_argument("--values", type=int, default=8 * 1024 * 1024, help="values per tensor (default 8M)")
    p.add_argument("--types", default="", help="comma-separated type names (default: all supported)")
    p.add_argument("--repeat", type=int, default=7, help="runs per measurement; the best counts")
    p.add_argument("--compiled", action="store_true", help="also time the torch.compile'd float stage (CPU)")
    args = p.parse_args(argv)
    if args.compiled and args.device != "cpu":
        print("error: --compiled is for --device cpu (on CUDA the eager float stage is already one kernel)", file=sys.stderr)
        return 2
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    names = [s for s in args.types.split(",") if s] or [t.name for t in TYPES.values()]
    gen = torch.Generator().manual_seed(0)
    rows = []
    for name in names:
        try:
            qtype = ggml_type(name).qtype
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        with np.errstate(all="ignore"):
            rows.append(bench_type(qtype, args.values, DTYPES[args.dtype], args.device, args.repeat, gen, args.compiled))
        if not args.json:
            r = rows[-1]
            if len(rows) == 1:
                path = "compiled float stage" if args.compiled else "eager"
                print(f"{args.values:,} values, {args.dtype} output, {args.device}, torch threads {torch.get_num_threads()}, "
                      f"best of {args.repeat}; ours = {path}")
                extra = f" {'eager GB/s':>10} {'eager x':>8}" if args.compiled else ""
                print(f"{'type':8} {'ours GB/s':>10} {'numpy GB/s':>11} {'ratio':>7} {'copy GB/s':>10}{extra} {'goal':>6}  met")
            extra = f" {r['eager_gbps']:10.2f} {r['eager_ratio']:8.2f}" if args.compiled else ""
            goal = f"{r['goal']:6.1f}  {'yes' if r['met'] else 'NO'}" if "goal" in r else f"{'-':>6}  -"
            print(f"{r['type']:8} {r['gbps']:10.2f} {r['numpy_gbps']:11.2f} {r['ratio']:7.2f} {r['copy_gbps']:10.2f}{extra} {goal}",
                  flush=True)
    if args.json:
        print(json.dumps([{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
