"""`dequant FILE --tensor NAME ... --out DIR`: tensors as float32 .npy files."""

from __future__ import annotations

import sys
from pathlib import Path

VERB = "dequant"
HELP = "Write chosen tensors of a .gguf file as float32 NAME.npy files in their logical shape."


def add_arguments(p):
    p.add_argument("file", help="path to a .gguf file")
    p.add_argument("--tensor", action="append", required=True, metavar="NAME", help="tensor name (repeatable)")
    p.add_argument("--out", required=True, help="output folder (created if missing)")


def run(args) -> int:
    # Imported here: the command line starts without torch for the verbs that do not need it.
    import numpy as np
    import torch

    from ..gguf.dequant import dequantize
    from ..gguf.ggml_types import UnsupportedQuantType
    from ..gguf.reader import GGUFReadError, read_gguf

    try:
        f = read_gguf(args.file)
    except GGUFReadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    missing = [n for n in args.tensor if n not in f.tensors]
    if missing:
        print(f"error: {f.path.name} has no tensor named {', '.join(missing)}; "
              f"`python -m twostage_i2v inspect {args.file} --json` lists the file, e.g. {next(iter(f.tensors), '')}",
              file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in args.tensor:
        t = f.tensors[name]
        try:
            values = dequantize(t.data, t.qtype, t.shape, torch.float32)
        except UnsupportedQuantType as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        target = out / f"{name}.npy"
        np.save(target, values.numpy())
        print(f"{target} {tuple(t.shape)} {t.type_name}")
    return 0
