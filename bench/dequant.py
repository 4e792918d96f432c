"""Dequantization speed: twostage_i2v.dequant vs gguf-py's numpy reference.

    .venv/bin/python bench/dequant.py [--json] [--device cpu|cuda] [--dtype bf16|fp16|fp32]
                                      [--values N] [--types Q4_K,Q8_0] [--repeat R]

Per type: random valid blocks of N values (rows of 4096 values), best of R
runs. GB/s counts output bytes (values * itemsize of --dtype) for both our
dequantize and gguf-py's (which always makes float32; its time is still
counted against the same byte count), their ratio, and a plain torch copy of
an output-sized tensor (clone: allocation included, as for dequantize) as the
memory ceiling, all measured in the same run.
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

from twostage_i2v.dequant import dequantize  # noqa: E402
from twostage_i2v.ggml_types import TYPES, ggml_type, random_blocks  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
ROW_VALUES = 4096


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


def bench_type(qtype, values: int, dtype: torch.dtype, device: str, repeat: int, gen: torch.Generator) -> dict:
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
    best = best_times(
        {
            "ours": lambda: dequantize(data, qtype, shape, dtype),
            "numpy": lambda: gguf.quants.dequantize(raw_np, t.qtype),
            "copy": lambda: src.clone(),
        },
        repeat,
        sync,
    )
    ours, ref, copy = best["ours"], best["numpy"], best["copy"]
    return {
        "type": t.name,
        "gbps": out_bytes / ours / 1e9,
        "numpy_gbps": out_bytes / ref / 1e9,
        "ratio": ref / ours,
        "copy_gbps": out_bytes / copy / 1e9,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    p.add_argument("--values", type=int, default=8 * 1024 * 1024, help="values per tensor (default 8M)")
    p.add_argument("--types", default="", help="comma-separated type names (default: all supported)")
    p.add_argument("--repeat", type=int, default=7, help="runs per measurement; the best counts")
    args = p.parse_args(argv)
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
            rows.append(bench_type(qtype, args.values, DTYPES[args.dtype], args.device, args.repeat, gen))
        if not args.json:
            r = rows[-1]
            if len(rows) == 1:
                print(f"{args.values:,} values, {args.dtype} output, {args.device}, torch threads {torch.get_num_threads()}")
                print(f"{'type':8} {'ours GB/s':>10} {'numpy GB/s':>11} {'ratio':>7} {'copy GB/s':>10}")
            print(f"{r['type']:8} {r['gbps']:10.2f} {r['numpy_gbps']:11.2f} {r['ratio']:7.2f} {r['copy_gbps']:10.2f}", flush=True)
    if args.json:
        print(json.dumps([{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
