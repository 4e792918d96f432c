"""Write named tensors to a GGUF file, each in the GGML type its caller picks.

The file is streamed: the header and tensor table are planned from shapes
alone, then each tensor is loaded, quantized and written in turn, so a 14B
model never sits in memory at once (pass ``LazyTensor`` values to load lazily).
Which type a tensor gets, and what the tensors are called, is the caller's
business (``models.wan_convert`` for Wan's recipes and names): this module knows
no model.

For every tensor stored with a shape other than its logical one (GGUF has at
most 4 dims; Wan's ``patch_embedding.weight`` has 5) the logical shape goes into
``comfy.gguf.orig_shape.<name>`` (array of int32), ComfyUI-GGUF's convention.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from . import quantize as q

ORIG_SHAPE_PREFIX = "comfy.gguf.orig_shape."
MAX_DIMS = 4

# (stored name, stored shape) -> the GGML type to store that tensor in
TypeChooser = Callable[[str, tuple], Any]


@dataclass
class LazyTensor:
    """A tensor known by its shape until ``load()`` is called (e.g. from safetensors)."""

    shape: tuple
    load: Callable[[], Any]


@dataclass
class WriteSummary:
    path: Path
    arch: str
    recipe: str  # what chose the types: a recipe name, or the caller's label
    n_values: int = 0
    data_bytes: int = 0
    file_size: int = 0
    # type name -> [tensors, values, bytes]
    types: dict[str, list[int]] = field(default_factory=dict)
    tensor_types: dict[str, str] = field(default_factory=dict)

    @property
    def n_tensors(self) -> int:
        return len(self.tensor_types)

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.data_bytes / self.n_values if self.n_values else 0.0

    def format(self) -> str:
        lines = [
            f"wrote {self.path} ({self.arch}" + (f", --type {self.recipe})" if self.recipe else ")"),
            f"  {self.n_tensors} tensors, {self.n_values:,} weights, "
            f"{self.file_size / 2**30:.3f} GiB ({self.file_size:,} bytes), {self.bits_per_weight:.3f} bits per weight",
            f"  {'type':<6} {'tensors':>8} {'weights':>16} {'share':>7} {'MiB':>10}",
        ]
        for name, (n, values, nbytes) in sorted(self.types.items(), key=lambda kv: -kv[1][2]):
            share = values / self.n_values if self.n_values else 0.0
            lines.append(f"  {name:<6} {n:>8} {values:>16,} {share:>7.1%} {nbytes / 2**20:>10.1f}")
        return "\n".join(lines)


def stored_shape(shape: tuple) -> tuple:
    """GGUF keeps 1 to 4 dims: fold the trailing dims of a deeper tensor into its rows."""
    shape = tuple(int(s) for s in shape)
    if not shape:  # a scalar is stored as one value
        return (1,)
    if len(shape) <= MAX_DIMS:
        return shape
    return (shape[0], math.prod(shape[1:]))


def _shape_of(value) -> tuple:
    return tuple(int(s) for s in value.shape)


def _load_float32(name: str, value) -> np.ndarray:
    if isinstance(value, LazyTensor):
        value = value.load()
    if hasattr(value, "detach"):  # torch: bf16/fp16/fp8 go through float32, losslessly
        if not value.is_floating_point():
            raise ValueError(f"tensor {name} has dtype {value.dtype}; only floating-point tensors can be written")
        return value.detach().to("cpu").float().numpy()
    arr = np.asarray(value)
    if arr.dtype.kind != "f":
        raise ValueError(f"tensor {name} has dtype {arr.dtype}; only floating-point tensors can be written")
    return arr.astype(np.float32, copy=False)


def _check_unique(names: Mapping[str, str]) -> None:
    seen: dict[str, str] = {}
    for old, new in names.items():
        if new in seen:
            raise ValueError(f"tensors {seen[new]!r} and {old!r} both map to {new!r}; the state dict mixes two models")
        seen[new] = old


def _add_metadata(writer, key: str, value) -> None:
    if isinstance(value, bool):
        writer.add_bool(key, value)
    elif isinstance(value, int):
        if -(2**31) <= value < 2**31:
            writer.add_int32(key, value)
        else:
            writer.add_int64(key, value)
    elif isinstance(value, float):
        writer.add_float32(key, value)
    elif isinstance(value, str):
        writer.add_string(key, value)
    elif isinstance(value, (list, tuple)):
        writer.add_array(key, list(value))
    else:
        raise TypeError(f"metadata {key!r}: cannot store a {type(value).__name__} in GGUF (use str, int, float, bool or a list)")


def check_target(path: str | os.PathLike, force: bool = False) -> Path:
    """The output path, after refusing an existing file (unless force) or a missing folder."""
    target = Path(path)
    if target.exists() and not force:
        raise FileExistsError(f"{target} already exists; pass --force to overwrite it")
    if target.is_dir():
        raise IsADirectoryError(f"{target} is a folder; give the output .gguf file name")
    if not target.parent.is_dir():
        raise FileNotFoundError(f"cannot write {target}: folder {target.parent} does not exist")
    return target


def write_gguf(
    path: str | os.PathLike,
    tensors: Mapping[str, Any],
    choose_type: TypeChooser,
    arch: str,
    metadata: Mapping[str, Any] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    force: bool = False,
    names: Mapping[str, str] | None = None,
    label: str = "",
    file_type: int | None = None,
) -> WriteSummary:
    """Write ``tensors`` (name -> torch tensor, numpy array or LazyTensor) to ``path``.

    ``choose_type(stored_name, stored_shape)`` gives each tensor's GGML type;
    ``names`` maps input names to stored ones (default: unchanged);
    ``arch`` is ``general.architecture``, ``file_type`` ``general.file_type`` (a
    ``gguf.LlamaFileType``); ``metadata`` goes in as typed KV pairs; ``label``
    names the type choice in the summary.
    ``progress(done, total, name)`` is called after each tensor. The file is
    written next to the target under a temporary name and renamed at the end,
    so a failure leaves no partial file. An existing target raises
    FileExistsError unless ``force``.
    """
    import gguf

    target = check_target(path, force)
    logical = {name: _shape_of(v) for name, v in tensors.items()}
    names = dict(names) if names is not None else {n: n for n in tensors}
    _check_unique(names)

    plan = []  # (old name, new name, logical shape, stored shape, qtype)
    for old, new in names.items():
        shape = logical[old]
        stored = stored_shape(shape)
        plan.append((old, new, shape, stored, choose_type(new, stored)))

    writer = gguf.GGUFWriter(path=None, arch=arch)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    if file_type is not None:
        writer.add_file_type(file_type)
    for key, value in (metadata or {}).items():
        _add_metadata(writer, key, value)
    for _, new, shape, stored, _qt in plan:
        if shape and stored != shape:
            writer.add_array(ORIG_SHAPE_PREFIX + new, list(shape))

    summary = WriteSummary(path=target, arch=arch, recipe=label)
    for _, new, _shape, stored, qt in plan:
        nbytes = math.prod(stored[:-1]) * q.row_bytes(qt, stored[-1])
        byte_shape = (*stored[:-1], q.row_bytes(qt, stored[-1]))
        writer.add_tensor_info(new, byte_shape, np.dtype(np.uint8), nbytes, raw_dtype=qt)
        entry = summary.types.setdefault(qt.name, [0, 0, 0])
        entry[0] += 1
        entry[1] += math.prod(stored)
        entry[2] += nbytes
        summary.n_values += math.prod(stored)
        summary.data_bytes += nbytes
        summary.tensor_types[new] = qt.name

    tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        writer.write_header_to_file(path=tmp)
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for done, (old, new, _shape, stored, qt) in enumerate(plan, 1):
            values = _load_float32(old, tensors[old])
            if tuple(values.shape) != logical[old]:
                raise ValueError(f"tensor {old}: announced shape {logical[old]} but loaded {tuple(values.shape)}")
            try:
                data = q.quantize(values.reshape(stored), qt)
            except ValueError as exc:
                raise ValueError(f"tensor {old}: {exc}") from None
            del values
            writer.write_tensor_data(data)
            del data
            if progress:
                progress(done, len(plan), new)
        writer.close()
        if target.exists() and not force:  # appeared while we were writing
            raise FileExistsError(f"{target} already exists; pass --force to overwrite it")
        os.replace(tmp, target)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    summary.file_size = target.stat().st_size
    return summary
