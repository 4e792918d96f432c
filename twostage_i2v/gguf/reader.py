"""Open a .gguf file memory-mapped and expose its tensors as raw-byte torch views.

Nothing is copied or dequantized here: each tensor is a uint8 view into the
mapped file plus its GGML type and logical shape. Dequantization happens later,
per layer, in the forward pass.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

ORIG_SHAPE_PREFIX = "comfy.gguf.orig_shape."
GGUF_MAGIC = b"GGUF"


class GGUFReadError(ValueError):
    """The file is not a readable GGUF; the message names the file and what to do."""


@dataclass
class GGUFTensor:
    name: str
    qtype: int  # gguf.GGMLQuantizationType
    shape: tuple[int, ...]  # logical shape, torch order
    data: torch.Tensor  # uint8 raw bytes, a view into the mapped file

    @property
    def type_name(self) -> str:
        import gguf

        return gguf.GGMLQuantizationType(self.qtype).name

    @property
    def n_elements(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def nbytes(self) -> int:
        return self.data.numel()


@dataclass
class GGUFFile:
    path: Path
    metadata: dict
    tensors: dict[str, GGUFTensor] = field(default_factory=dict)
    file_size: int = 0

    @property
    def architecture(self) -> str | None:
        return self.metadata.get("general.architecture")


def _field_value(f):
    import gguf

    if not f.types:
        return None
    value = f.contents()
    if f.types[0] == gguf.GGUFValueType.ARRAY and isinstance(value, list) and f.types[-1] != gguf.GGUFValueType.STRING:
        return [v.item() if hasattr(v, "item") else v for v in value]
    if hasattr(value, "item"):
        return value.item()
    return value


def _check_header(path: Path) -> int:
    if not path.is_file():
        raise GGUFReadError(f"{path}: no such file")
    size = path.stat().st_size
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != GGUF_MAGIC:
        raise GGUFReadError(
            f"{path.name} is not a GGUF file (it starts with {magic!r}, not b'GGUF'): "
            "pick a .gguf model file, or convert a .safetensors one with `python -m twostage_i2v convert`"
        )
    return size


def read_metadata(path: str | os.PathLike) -> dict:
    """Only the key/value metadata; cheap, still memory-mapped."""
    return read_gguf(path, with_tensors=False).metadata


def read_gguf(path: str | os.PathLike, with_tensors: bool = True) -> GGUFFile:
    import gguf

    path = Path(path)
    size = _check_header(path)
    try:
        reader = gguf.GGUFReader(str(path), mode="r")
    except Exception as exc:  # gguf-py raises bare ValueError/IndexError/struct errors on damage
        raise GGUFReadError(
            f"{path.name} could not be read as GGUF ({type(exc).__name__}: {exc}); "
            "the file is probably truncated or damaged: download it again"
        ) from None

    metadata = {}
    for name, f in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        try:
            metadata[name] = _field_value(f)
        except Exception:  # an unreadable value is not worth refusing the file over
            metadata[name] = None
    out = GGUFFile(path=path, metadata=metadata, file_size=size)
    if not with_tensors:
        return out

    end = max((t.data_offset + t.n_bytes for t in reader.tensors), default=0)  # data_offset is absolute
    if end > size:
        raise GGUFReadError(
            f"{path.name} is truncated: its tensors need {end:,} bytes but the file has {size:,}; "
            "download it again (compare its size with the published one)"
        )

    with warnings.catch_warnings():
        # The map is read-only on purpose; torch warns that it cannot write to it.
        warnings.simplefilter("ignore", UserWarning)
        for t in reader.tensors:
            raw = torch.from_numpy(np.asarray(t.data).view(np.uint8).reshape(-1))
            shape = tuple(int(s) for s in reversed(t.shape.tolist()))
            orig = metadata.get(ORIG_SHAPE_PREFIX + t.name)
            if orig:
                shape = tuple(int(s) for s in orig)
            out.tensors[t.name] = GGUFTensor(t.name, int(t.tensor_type), shape, raw)
    return out
