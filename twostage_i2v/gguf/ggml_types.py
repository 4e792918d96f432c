"""The GGML tensor types this package can dequantize, their block layouts,
and random valid blocks of each (for tests and benchmarks).

Sizes come from ``gguf.GGML_QUANT_SIZES`` (values per block, bytes per
block). ``f16_offsets`` records where each block keeps its float16 scale
fields: random bytes are a valid block of every supported type once those
fields hold finite numbers (all other bytes are bit fields or int8 values
where any pattern is allowed).
"""

from __future__ import annotations

from dataclasses import dataclass

import gguf
import torch

T = gguf.GGMLQuantizationType
QK_K = 256


class UnsupportedQuantType(ValueError):
    """A tensor's GGML type has no dequantizer here; the message lists the ones that do."""

    def __init__(self, qtype, detail: str | None = None):
        self.qtype = qtype
        self.type_name = type_name(qtype)
        self.supported = supported_names()
        head = detail or f"GGML type {self.type_name} cannot be dequantized by this package"
        super().__init__(f"{head} (supported types: {', '.join(self.supported)})")


@dataclass(frozen=True)
class GGMLType:
    qtype: gguf.GGMLQuantizationType
    block_size: int  # values per block
    type_size: int  # bytes per block
    f16_offsets: tuple[int, ...]  # byte offsets of the float16 scale fields in a block

    @property
    def name(self) -> str:
        return self.qtype.name

    @property
    def is_float(self) -> bool:
        return self.block_size == 1


def _t(qtype, *f16_offsets: int) -> GGMLType:
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    return GGMLType(qtype, block_size, type_size, f16_offsets)


# Layouts (byte offsets inside one block), as gguf-py's dequantizers read them:
#   Q4_0  d@0 qs@2            Q4_1  d@0 m@2 qs@4       Q5_0 d@0 qh@2 qs@6
#   Q5_1  d@0 m@2 qh@4 qs@8   Q8_0  d@0 qs@2
#   Q2_K  scales@0 qs@16 d@80 dmin@82                  Q3_K hmask@0 qs@32 scales@96 d@108
#   Q4_K  d@0 dmin@2 scales@4 qs@16                    Q5_K d@0 dmin@2 scales@4 qh@16 qs@48
#   Q6_K  ql@0 qh@128 scales@192 d@208
#   IQ4_NL d@0 qs@2           IQ4_XS d@0 scales_h@2 scales_l@4 qs@8
TYPES: dict[gguf.GGMLQuantizationType, GGMLType] = {
    t.qtype: t
    for t in (
        _t(T.F32),
        _t(T.F16),
        _t(T.BF16),
        _t(T.Q4_0, 0),
        _t(T.Q4_1, 0, 2),
        _t(T.Q5_0, 0),
        _t(T.Q5_1, 0, 2),
        _t(T.Q8_0, 0),
        _t(T.Q2_K, 80, 82),
        _t(T.Q3_K, 108),
        _t(T.Q4_K, 0, 2),
        _t(T.Q5_K, 0, 2),
        _t(T.Q6_K, 208),
        _t(T.IQ4_NL, 0),
        _t(T.IQ4_XS, 0),
    )
}


def _as_enum(qtype):
    """The enum member for an enum, int or name; None if there is none."""
    if isinstance(qtype, T):
        return qtype
    if isinstance(qtype, str):
        return T.__members__.get(qtype.upper())
    try:
        return T(int(qtype))
    except (ValueError, TypeError):
        return None


def supported_names() -> list[str]:
    return [t.name for t in TYPES.values()]


def is_supported(qtype) -> bool:
    return _as_enum(qtype) in TYPES


def type_name(qtype) -> str:
    """"Q4_K" for a known type (enum, int or name), "type 99" for an unknown number."""
    e = _as_enum(qtype)
    return e.name if e is not None else f"type {qtype}"


def ggml_type(qtype) -> GGMLType:
    """The table entry for ``qtype``; raises UnsupportedQuantType if there is none."""
    t = TYPES.get(_as_enum(qtype))
    if t is None:
        raise UnsupportedQuantType(qtype)
    return t


def quantized_nbytes(qtype, shape) -> int:
    """Bytes a tensor of logical ``shape`` takes in ``qtype`` (whole blocks only)."""
    t = ggml_type(qtype)
    n = 1
    for s in shape:
        n *= int(s)
    if n % t.block_size:
        raise ValueError(
            f"a {t.name} tensor of shape {tuple(int(s) for s in shape)} has {n} values, "
            f"not a whole number of {t.block_size}-value blocks"
        )
    return n // t.block_size * t.type_size


# ----------------------------------------------------------------- random blocks

# Bit masks: sign | exponent | mantissa. An all-ones exponent is inf/nan.
_FLOAT_BITS = {T.F32: (torch.int32, 0x7F800000, 1 << 30), T.F16: (torch.int16, 0x7C00, 1 << 14), T.BF16: (torch.int16, 0x7F80, 1 << 14)}


def _finite(bits: torch.Tensor, exp_mask: int, flip: int) -> torch.Tensor:
    """Random float bit patterns made finite by clearing the top exponent bit where all are set."""
    bad = (bits & exp_mask) == exp_mask
    return torch.where(bad, bits ^ flip, bits)


def random_blocks(qtype, n_blocks: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n_blocks`` random valid blocks of ``qtype``: uint8 [n_blocks, type_size] on CPU.

    Every byte is random except the float16 scale fields, which hold random
    finite float16 values (subnormals and both signs included); F32/F16/BF16
    "blocks" are single random finite values.
    """
    t = ggml_type(qtype)
    raw = torch.randint(0, 256, (n_blocks, t.type_size), dtype=torch.uint8, generator=generator)
    if t.is_float:
        dtype, exp_mask, flip = _FLOAT_BITS[t.qtype]
        words = raw.view(dtype)
        words.copy_(_finite(words, exp_mask, flip))
        return raw
    f16 = _FLOAT_BITS[T.F16]
    for off in t.f16_offsets:
        field = raw[:, off : off + 2].view(torch.int16)
        field.copy_(_finite(field, f16[1], f16[2]))
    return raw
