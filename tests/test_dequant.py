"""dequantize(): every supported GGML type against gguf-py's numpy reference.

Oracle: ``gguf.quants.dequantize`` on the same raw bytes (float32). Our float32
output must match it to within 1 ulp (in practice bit for bit); bfloat16 and
float16 outputs must equal our float32 output rounded once.
"""

from __future__ import annotations

import os
import shutil

import gguf
import numpy as np
import pytest
import torch

from twostage_i2v.gguf import dequant as dq
from twostage_i2v.gguf.dequant import dequantize
from twostage_i2v.gguf.ggml_types import (
    TYPES,
    UnsupportedQuantType,
    is_supported,
    quantized_nbytes,
    random_blocks,
    supported_names,
    type_name,
)

pytestmark = pytest.mark.core

QTYPES = list(TYPES)
IDS = [t.name for t in QTYPES]
LAYOUTS = [(3, 7), (37, 2)]  # rows x blocks per row; row counts that are not powers of two
# cuda cases exist only where there is a device: no skip noise on CPU machines
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _case(qtype, rows: int, blocks_per_row: int, seed: int = 0):
    t = TYPES[qtype]
    gen = torch.Generator().manual_seed(seed * 1000 + int(qtype))
    raw = random_blocks(qtype, rows * blocks_per_row, gen).view(rows, -1)
    shape = (rows, blocks_per_row * t.block_size)
    ref = gguf.quants.dequantize(raw.numpy(), qtype)
    return raw, shape, torch.from_numpy(np.ascontiguousarray(ref, dtype=np.float32)).reshape(shape)


def _ulp_diff(a: torch.Tensor, b: torch.Tensor) -> int:
    """Largest distance in float32 units-in-the-last-place (signed zeros count as equal)."""

    def ordered(x):
        i = x.contiguous().view(torch.int32).to(torch.int64)
        return torch.where(i < 0, -(i & 0x7FFFFFFF), i)

    assert a.dtype == b.dtype == torch.float32 and a.shape == b.shape
    if a.numel() == 0:
        return 0
    return int((ordered(a) - ordered(b)).abs().max())


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    assert a.dtype == b.dtype and a.shape == b.shape
    word = {4: torch.int32, 2: torch.int16}[a.element_size()]
    return torch.equal(a.contiguous().view(word), b.contiguous().view(word))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fused", [False, True], ids=["staged", "fused"])
@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda l: f"{l[0]}x{l[1]}blocks")
@pytest.mark.parametrize("qtype", QTYPES, ids=IDS)
def test_matches_gguf_py(qtype, layout, fused, device):
    raw, shape, ref = _case(qtype, *layout)
    data = raw.to(device)
    got = dequantize(data, qtype, shape, torch.float32, fused=fused)
    assert got.shape == shape and got.dtype == torch.float32 and got.device == data.device
    got = got.cpu()
    assert torch.isfinite(ref).all()  # random_blocks made valid blocks
    assert _ulp_diff(got, ref) <= 1
    for dtype in (torch.bfloat16, torch.float16):
        low = dequantize(data, qtype, shape, dtype, fused=fused)
        assert low.dtype == dtype and low.shape == shape
        assert _same_bits(low.cpu(), got.to(dtype)), f"{dtype} is not the float32 result rounded once"


@pytest.mark.parametrize("qtype", QTYPES, ids=IDS)
def test_many_chunks(qtype, monkeypatch):
    # chunks of a few blocks (one for K-quants), the last one partial: exercises per-chunk slicing
    monkeypatch.setattr(dq, "CPU_CHUNK_VALUES", 160)
    raw, shape, ref = _case(qtype, 37, 2, seed=1)
    for dtype in (torch.float32, torch.bfloat16):
        got = dequantize(raw, qtype, shape, dtype)
        assert _ulp_diff(got.float(), ref.to(dtype).float()) <= (1 if dtype == torch.float32 else 0)


@pytest.mark.parametrize("qtype", QTYPES, ids=IDS)
def test_misaligned_bytes(qtype):
    # raw bytes starting at an odd address (e.g. a slice of a larger buffer) still decode
    raw, shape, ref = _case(qtype, 3, 7, seed=2)
    padded = torch.zeros(raw.numel() + 1, dtype=torch.uint8)
    padded[1:] = raw.view(-1)
    got = dequantize(padded[1:], qtype, shape, torch.float32)
    assert _ulp_diff(got, ref) <= 1


@pytest.mark.parametrize("qtype", [gguf.GGMLQuantizationType.Q4_K, gguf.GGMLQuantizationType.Q8_0, gguf.GGMLQuantizationType.F16], ids=lambda q: q.name)
def test_logical_shapes_beyond_4d(qtype):
    t = TYPES[qtype]
    shape = (2, 3, 1, 2, 2, t.block_size)  # 6-D, e.g. a patch embedding kept in its original shape
    n_blocks = 2 * 3 * 2 * 2
    raw = random_blocks(qtype, n_blocks, torch.Generator().manual_seed(3))
    ref = gguf.quants.dequantize(raw.numpy(), qtype).reshape(shape)
    got = dequantize(raw.view(-1), qtype, shape, torch.bfloat16)
    assert got.shape == shape
    assert _same_bits(got, torch.from_numpy(np.ascontiguousarray(ref, dtype=np.float32)).to(torch.bfloat16))


def test_result_owns_its_memory():
    raw = random_blocks(gguf.GGMLQuantizationType.F32, 8, torch.Generator().manual_seed(4))
    before = raw.clone()
    out = dequantize(raw, gguf.GGMLQuantizationType.F32, (2, 4))
    out.zero_()
    assert torch.equal(raw, before)


def test_large_output_is_exact():
    # big enough for the huge-page output path and several CPU chunks
    qtype = gguf.GGMLQuantizationType.Q4_K
    raw = random_blocks(qtype, 9 * 1024 + 3, torch.Generator().manual_seed(5))
    ref = torch.from_numpy(gguf.quants.dequantize(raw.numpy(), qtype)).reshape(-1)
    got = dequantize(raw, qtype, (ref.numel(),), torch.float32)
    assert _ulp_diff(got, ref) <= 1


def test_wrong_byte_count_names_sizes():
    qtype = gguf.GGMLQuantizationType.Q4_K
    raw = random_blocks(qtype, 3, torch.Generator().manual_seed(6))
    with pytest.raises(ValueError) as exc:
        dequantize(raw, qtype, (4, 256))
    assert str(exc.value) == "Q4_K tensor of shape (4, 256) needs 576 bytes (4 blocks of 144), but got 432 bytes"


def test_shape_not_whole_blocks():
    raw = torch.zeros(144, dtype=torch.uint8)
    with pytest.raises(ValueError) as exc:
        dequantize(raw, gguf.GGMLQuantizationType.Q4_K, (3, 100))
    assert str(exc.value) == "a Q4_K tensor of shape (3, 100) has 300 values, not a whole number of 256-value blocks"


def test_unsupported_type_message_lists_supported():
    supported = "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS"
    assert ", ".join(supported_names()) == supported
    qtype = gguf.GGMLQuantizationType.IQ2_XXS
    with pytest.raises(UnsupportedQuantType) as exc:
        dequantize(torch.zeros(66, dtype=torch.uint8), qtype, (256,))
    assert isinstance(exc.value, ValueError)
    assert str(exc.value) == f"GGML type IQ2_XXS cannot be dequantized by this package (supported types: {supported})"
    with pytest.raises(UnsupportedQuantType, match=r"^GGML type type 99 cannot"):
        dequantize(torch.zeros(4, dtype=torch.uint8), 99, (4,))
    detailed = UnsupportedQuantType(qtype, "model.gguf: tensor x is stored as IQ2_XXS")
    assert str(detailed) == f"model.gguf: tensor x is stored as IQ2_XXS (supported types: {supported})"


def test_non_float_dtype_refused():
    raw = random_blocks(gguf.GGMLQuantizationType.Q8_0, 1, torch.Generator().manual_seed(7))
    with pytest.raises(TypeError, match="floating dtype"):
        dequantize(raw, gguf.GGMLQuantizationType.Q8_0, (32,), torch.int32)


def test_type_table_helpers():
    T = gguf.GGMLQuantizationType
    for qtype, t in TYPES.items():
        assert (t.block_size, t.type_size) == gguf.GGML_QUANT_SIZES[qtype]
        assert is_supported(qtype) and is_supported(int(qtype)) and is_supported(qtype.name)
        assert type_name(int(qtype)) == qtype.name
        for shape in [(7, 3 * t.block_size), (2, 5, t.block_size)]:
            assert quantized_nbytes(qtype, shape) == int(np.prod(gguf.quants.quant_shape_to_byte_shape(shape, qtype)))
    assert not is_supported(T.IQ2_XXS) and not is_supported(T.TQ1_0) and not is_supported(12345)
    assert type_name(12345) == "type 12345"


@pytest.mark.parametrize("qtype", QTYPES, ids=IDS)
def test_random_blocks_are_valid(qtype):
    t = TYPES[qtype]
    raw = random_blocks(qtype, 4096, torch.Generator().manual_seed(8))
    assert raw.dtype == torch.uint8 and raw.shape == (4096, t.type_size)
    fields = [raw[:, o : o + 2].contiguous().view(torch.float16) for o in t.f16_offsets]
    if t.is_float:
        fields = [raw.view({4: torch.float32, 2: torch.float16}[t.type_size] if qtype != gguf.GGMLQuantizationType.BF16 else torch.bfloat16)]
    for f in fields:
        assert torch.isfinite(f.float()).all()
        assert (f.float() < 0).any() and (f.float() > 0).any()  # both signs, i.e. really random


# --------------------------------------------------------------------------- compiled float stage

_HAS_CXX = shutil.which(os.environ.get("CXX", "g++")) is not None or shutil.which("clang++") is not None


@pytest.mark.skipif(not _HAS_CXX, reason="torch.compile on CPU needs a C++ compiler")
@pytest.mark.parametrize(
    "qtype, dtype",
    [
        (gguf.GGMLQuantizationType.Q8_0, torch.bfloat16),  # the type the compiled path exists for
        (gguf.GGMLQuantizationType.Q4_K, torch.float32),  # a minimum: a * q + b
        (gguf.GGMLQuantizationType.IQ4_NL, torch.float16),  # codes as a transposed view
    ],
    ids=lambda v: getattr(v, "name", str(v).replace("torch.", "")),
)
def test_compiled_float_stage_matches_gguf_py(qtype, dtype, monkeypatch):
    # small chunks so several full chunks take the compiled path and the partial last one the eager one
    monkeypatch.setattr(dq, "CPU_CHUNK_VALUES", 160)
    raw, shape, ref = _case(qtype, 37, 2, seed=6)
    got = dequantize(raw, qtype, shape, dtype, compiled=True)
    assert dq._COMPILED.get((qtype, dtype)) is not None, "the compiled path fell back to eager"
    assert _same_bits(got, ref.to(dtype)) if dtype != torch.float32 else _ulp_diff(got, ref) <= 1


def test_compile_failure_falls_back_to_exact_eager(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    qtype = gguf.GGMLQuantizationType.Q5_1
    monkeypatch.setattr(dq, "CPU_CHUNK_VALUES", 160)
    monkeypatch.setattr(dq, "_COMPILED", {})
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: broken)
    raw, shape, ref = _case(qtype, 37, 2, seed=7)
    with pytest.warns(UserWarning, match="using eager torch"):
        got = dequantize(raw, qtype, shape, torch.bfloat16, compiled=True)
    assert _same_bits(got, ref.to(torch.bfloat16))
    assert dq._COMPILED[(qtype, torch.bfloat16)] is None  # not tried again
    monkeypatch.setenv(dq.COMPILED_ENV, "1")  # the environment switch takes the same path
    assert _same_bits(dequantize(raw, qtype, shape, torch.bfloat16), ref.to(torch.bfloat16))
