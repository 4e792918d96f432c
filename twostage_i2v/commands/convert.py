"""`python -m twostage_i2v convert IN.safetensors OUT.gguf --type Q4_K_M [--force]`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..models.wan_recipes import RECIPE_NAMES, get_recipe

VERB = "convert"
HELP = "Convert a .safetensors diffusion model (Wan 2.1, Wan 2.2) to a quantized .gguf file."
DEFAULT_TYPE = "Q4_K_M"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="the .safetensors model to convert")
    parser.add_argument("output", help="the .gguf file to write")
    parser.add_argument(
        "--type",
        dest="qtype",
        default=DEFAULT_TYPE,
        metavar="TYPE",
        help=f"quantization recipe (default {DEFAULT_TYPE}): {', '.join(RECIPE_NAMES)}",
    )
    parser.add_argument("--arch", default=None, help="general.architecture to record when the model is not Wan 2.1")
    parser.add_argument("--force", action="store_true", help="overwrite OUTPUT if it exists")


def _fail(message: str) -> int:
    print(f"convert: error: {message}", file=sys.stderr)
    return 1


def open_safetensors(path: Path):
    """(handle, {name: LazyTensor}) reading one tensor at a time from ``path``."""
    from safetensors import safe_open

    from ..gguf.writer import LazyTensor

    handle = safe_open(str(path), framework="pt", device="cpu")
    lazy = {}
    for name in handle.keys():
        shape = tuple(handle.get_slice(name).get_shape())
        lazy[name] = LazyTensor(shape, lambda name=name: handle.get_tensor(name))
    return handle, lazy


def run(args: argparse.Namespace) -> int:
    from ..gguf.writer import check_target
    from ..models.kind import expert_metadata
    from ..models.wan_convert import write_model_gguf

    src, dst = Path(args.input), Path(args.output)
    try:
        recipe = get_recipe(args.qtype)
    except ValueError as exc:
        return _fail(str(exc))
    if not src.is_file():
        return _fail(f"{src}: no such file (give the .safetensors model to convert)")
    try:
        check_target(dst, args.force)
    except (FileExistsError, FileNotFoundError, IsADirectoryError) as exc:
        return _fail(str(exc))
    try:
        _handle, tensors = open_safetensors(src)
    except Exception as exc:  # safetensors raises its own error types for damaged headers
        return _fail(f"{src} could not be read as safetensors ({type(exc).__name__}: {exc})")
    if not tensors:
        return _fail(f"{src} holds no tensors")

    from tqdm import tqdm

    start = time.perf_counter()
    with tqdm(total=len(tensors), unit="tensor", desc=f"{dst.name} {recipe.name}", file=sys.stderr) as bar:

        def progress(done: int, total: int, name: str) -> None:
            bar.set_postfix_str(name, refresh=False)
            bar.update(1)

        try:
            # A Wan 2.2 A14B expert named as such keeps that in the file, whatever the GGUF is renamed to.
            summary = write_model_gguf(dst, tensors, recipe, arch=args.arch, metadata=expert_metadata(src.name),
                                       progress=progress, force=args.force)
        except (ValueError, OSError) as exc:
            bar.close()
            return _fail(f"{src} -> {dst}: {exc}")
    print(summary.format())
    print(f"  took {time.perf_counter() - start:.1f} s")
    return 0
