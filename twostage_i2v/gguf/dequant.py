"""Dequantize one GGUF tensor's raw bytes with torch ops, on CPU or CUDA.

Results equal gguf-py's ``gguf.quants.dequantize`` bit for bit in float32;
bfloat16/float16 results are that float32 result rounded once. That holds
whatever the order of operations, which leaves room to be fast: in every
supported type a value is ``a * q + b`` where ``q`` is a small integer code
and ``a`` a per-(sub)block scale whose product with ``q`` is exact in float32
(float16 scale: 11 significant bits, sub-scale <= 6, code <= 7: at most 24
bits), so only the ``+ b`` of the types with a minimum (Q4_1, Q5_1, Q2_K,
Q4_K, Q5_K) rounds, once, exactly as gguf-py's does.

The work per tensor:

* ``scales`` turns every block's scale fields into float32 ``a`` (and ``b``)
  at once: small arrays, 1/16 to 1/32 of the values.
* ``codes`` unpacks the bit fields of a chunk of blocks into one byte per
  value, in value order. It works on the blocks as 16/32/64-bit words (SWAR:
  one shift or mask handles 2 to 8 codes) because torch's CPU loops pay per
  row: an op over rows of 16-32 bytes runs element by element, while the
  same bytes as 2-8 words per row, or one flat run, go at memory speed.
* The float stage converts the codes to float32, scales them, and for a
  narrower dtype rounds once into the output.

On CPU this runs in chunks of about two million values, so codes and float32
scratch stay in cache and no output-sized temporary is ever allocated; large
outputs are allocated through numpy, which asks Linux for transparent huge
pages (page faults on a fresh 32 MB tensor otherwise cost more than all the
arithmetic). On CUDA, mixed-dtype ops cast inside the kernel, so the float
stage is one ``mul``/``addcmul`` straight into the output dtype.

Eager CPU torch has no such op (mixed-dtype ops there cast through
output-sized temporaries), so its float stage is three passes: codes to
float32, scale, round into the output. Where that is the bottleneck (Q8_0,
whose codes need no unpacking), ``compiled=True`` (or the environment
variable ``TWOSTAGE_I2V_COMPILED_DEQUANT=1``) runs the float stage of every
full chunk as one ``torch.compile``d pass: the same float32 arithmetic, so the
same bits. It costs a compile per (type, dtype) on first use (seconds; cached
by inductor across runs) and needs a C++ compiler; if compiling fails, the
eager path takes over for the rest of the process.
"""

from __future__ import annotations

import os
import threading
import types
import warnings

import numpy as np
import torch

from .ggml_types import T, UnsupportedQuantType, ggml_type, quantized_nbytes

__all__ = ["dequantize", "UnsupportedQuantType"]

CPU_CHUNK_VALUES = 1 << 21
COMPILED_ENV = "TWOSTAGE_I2V_COMPILED_DEQUANT"
DEVICE_CHUNK_VALUES = 1 << 24
_HUGE_PAGE_BYTES = 1 << 22  # numpy advises huge pages from 4 MiB on

_FLOAT_STORAGE = {T.F32: torch.float32, T.F16: torch.float16, T.BF16: torch.bfloat16}

# Byte-replicated masks (kept below 2**63 so they fit a signed int64).
_REP = {torch.int16: 0x0101, torch.int32: 0x01010101, torch.int64: 0x0101010101010101}


def _rep(dtype, byte: int) -> int:
    return _REP[dtype] * byte


# --------------------------------------------------------------------------- helpers


def _words(x: torch.Tensor, dtype) -> torch.Tensor:
    """uint8 [c, n] -> [c, n / size] words; a misaligned start is copied first."""
    try:
        return x.view(dtype)
    except RuntimeError:
        # not clone(): it keeps a one-row slice's odd stride, which view() rejects again
        return torch.empty(x.shape, dtype=x.dtype, device=x.device).copy_(x).view(dtype)


def _f32_field(blocks: torch.Tensor, offset: int, dtype=torch.float16, count: int = 1) -> torch.Tensor:
    """Field ``offset`` of every block read as ``count`` ``dtype`` values -> float32 [n, count]."""
    width = torch.empty((), dtype=dtype).element_size() * count
    return _words(blocks[:, offset : offset + width], dtype).to(torch.float32)


_CONSTS: dict = {}


def _const(name: str, device, build) -> torch.Tensor:
    """Small constant tensors (shift amounts, lookup tables), built once per device."""
    key = (name, device)
    t = _CONSTS.get(key)
    if t is None:
        t = _CONSTS[key] = build().to(device)
    return t


def _shifts(dtype, values, shape, device) -> torch.Tensor:
    return _const(f"shifts{values}{dtype}{shape}", device, lambda: torch.tensor(values, dtype=dtype).view(shape))


def _byte_table(name: str, device, per_byte) -> torch.Tensor:
    """Lookup table: byte value -> the bytes ``per_byte(b)`` packed into one 2/4/8-byte word."""

    def build():
        rows = torch.tensor([per_byte(b) for b in range(256)], dtype=torch.int16).to(torch.uint8)
        word = {2: torch.int16, 4: torch.int32, 8: torch.int64}[rows.shape[1]]
        return rows.view(word).view(256)

    return _const(name, device, build)


def _lookup(table: torch.Tensor, index_bytes: torch.Tensor) -> torch.Tensor:
    """``table[index_bytes]`` as words [*index_bytes.shape]."""
    idx = index_bytes.to(torch.int32).view(-1)
    return torch.index_select(table, 0, idx).view(index_bytes.shape)


class _Workspace:
    """Buffers reused by every chunk of one call, sliced to the chunk's size."""

    def __init__(self, device):
        self.device = device
        self.bufs: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape, dtype=torch.uint8) -> torch.Tensor:
        size = torch.empty((), dtype=dtype).element_size()
        n = size
        for s in shape:
            n *= s
        buf = self.bufs.get(name)
        if buf is None or buf.numel() < n:
            buf = self.bufs[name] = torch.empty(n, dtype=torch.uint8, device=self.device)
        return buf[:n].view(dtype).view(shape)


def _split_nibbles(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Words ``src`` [c, ..., k] -> ``dst`` [c, ..., 2, k]: low nibbles, then high nibbles."""
    dst.select(-2, 0).copy_(src)
    torch.bitwise_right_shift(src, 4, out=dst.select(-2, 1))
    return dst.bitwise_and_(_rep(dst.dtype, 0x0F))


def _bit_planes(src: torch.Tensor, dst: torch.Tensor, bits: int, to_bit: int) -> torch.Tensor:
    """Words ``src`` [c, ..., 1, k] -> ``dst`` [c, ..., 8 // bits, k]: bit field s of every byte
    (``bits`` wide, s = 0, 1, ...) moved to bit ``to_bit`` of the same byte."""
    planes = dst.shape[-2]
    shifts = _shifts(dst.dtype, [bits * s for s in range(planes)], (planes, 1), src.device)
    torch.bitwise_right_shift(src, shifts, out=dst)
    if to_bit:
        dst.bitwise_left_shift_(to_bit)
    return dst.bitwise_and_(_rep(dst.dtype, ((1 << bits) - 1) << to_bit))


# --------------------------------------------------------------------------- types
#
# scales(blocks)   -> (a, b): float32 [n_blocks, n_sub, 1]; b is None or to be added
# codes(chunk, ws) -> int8/uint8 [c, block_size] codes in value order (any view that
#                     reshapes to [c, n_sub, block_size // n_sub] in value order)
# value = a * code (+ b)


class _Codec:
    n_sub = 1

    def scales(self, blocks):
        raise NotImplementedError

    def codes(self, blocks, ws):
        raise NotImplementedError


class _Q8_0(_Codec):
    def scales(self, blocks):
        return _f32_field(blocks, 0).view(-1, 1, 1), None

    def codes(self, blocks, ws):
        # a strided int8 view: the float conversion reads it directly (rows of 32 vectorise)
        return blocks[:, 2:].view(torch.int8)


class _Q4_0(_Codec):
    word, qs_at, bias = torch.int16, 2, 8

    def scales(self, blocks):
        return _f32_field(blocks, 0).view(-1, 1, 1), None

    def nibbles(self, blocks, ws):
        c = blocks.shape[0]
        size = torch.empty((), dtype=self.word).element_size()
        qs = _words(blocks, self.word)[:, self.qs_at // size : (self.qs_at + 16) // size]
        # byte i: low nibble is value i, high nibble value 16 + i
        return _split_nibbles(qs, ws.get("q", (c, 2, 16 // size), self.word)).view(torch.uint8).view(c, 32)

    def codes(self, blocks, ws):
        return self.nibbles(blocks, ws).sub_(self.bias).view(torch.int8)


class _Q4_1(_Q4_0):
    word, qs_at = torch.int32, 4

    def scales(self, blocks):
        return _f32_field(blocks, 0).view(-1, 1, 1), _f32_field(blocks, 2).view(-1, 1, 1)

    def codes(self, blocks, ws):
        return self.nibbles(blocks, ws)


def _high_bit_table(bias: int):
    # byte -> 8 bytes: (bit k of the byte) * 16 - bias, for k = 0..7
    return lambda b: [((((b >> k) & 1) << 4) - bias) & 255 for k in range(8)]


class _Q5_0(_Q4_0):
    word, qs_at, qh_at, bias = torch.int16, 6, 2, 16

    def codes(self, blocks, ws):
        c = blocks.shape[0]
        q = self.nibbles(blocks, ws)
        # qh is a little-endian uint32: bit i is the 5th bit of value i (bit i % 8 of byte i // 8).
        # The table gives 8 code bytes per qh byte, 16 * bit - bias (0xF0 or 0x00 for Q5_0), and
        # OR-ing that onto a nibble is the same as adding it.
        table = _byte_table(f"q5_high{self.bias}", blocks.device, _high_bit_table(self.bias))
        high = _lookup(table, blocks[:, self.qh_at : self.qh_at + 4])
        q.view(torch.int64).bitwise_or_(high)
        return q.view(torch.int8) if self.bias else q


class _Q5_1(_Q5_0):
    word, qs_at, qh_at, bias = torch.int64, 8, 4, 0

    def scales(self, blocks):
        return _f32_field(blocks, 0).view(-1, 1, 1), _f32_field(blocks, 2).view(-1, 1, 1)


class _Q2_K(_Codec):
    n_sub = 16

    def scales(self, blocks):
        n = blocks.shape[0]
        w = _words(blocks, torch.int32)[:, 0:4]  # 16 scale bytes: low nibble scale, high nibble min
        nib = torch.empty((n, 2, 4), dtype=torch.int32, device=blocks.device)
        _split_nibbles(w, nib)
        nib = nib.view(torch.uint8).view(n, 2, 16).to(torch.float32)
        a = _f32_field(blocks, 80) * nib[:, 0]
        b = _f32_field(blocks, 82).neg_() * nib[:, 1]  # -(dmin * m), exactly
        return a.view(n, 16, 1), b.view(n, 16, 1)

    def codes(self, blocks, ws):
        c = blocks.shape[0]
        # qs byte j*32 + i holds values j*128 + s*32 + i in its bit pairs s = 0..3
        qs = _words(blocks, torch.int32)[:, 4:20].view(c, 2, 1, 8)
        return _bit_planes(qs, ws.get("q", (c, 2, 4, 8), torch.int32), 2, 0).view(torch.uint8).view(c, 256)


class _Q3_K(_Codec):
    n_sub = 16

    def scales(self, blocks):
        n = blocks.shape[0]
        # 16 six-bit scales: low nibbles in bytes 0..7 (low halves first), bit pairs in bytes 8..11
        s = _words(blocks[:, 96:108], torch.int32)  # [n, 3]
        low = torch.empty((n, 2, 2), dtype=torch.int32, device=blocks.device)
        _split_nibbles(s[:, 0:2], low)
        high = torch.empty((n, 4, 1), dtype=torch.int32, device=blocks.device)
        _bit_planes(s[:, 2:3].view(n, 1, 1), high, 2, 4)
        sc = (low.view(n, 4) | high.view(n, 4)).view(torch.int8).view(n, 16) - 32
        a = _f32_field(blocks, 108) * sc.to(torch.float32)
        return a.view(n, 16, 1), None

    def codes(self, blocks, ws):
        c = blocks.shape[0]
        w = _words(blocks, torch.int16)
        # qs byte j*32 + i: bit pair s is the low 2 bits of value j*128 + s*32 + i
        q = _bit_planes(w[:, 16:48].view(c, 2, 1, 16), ws.get("q", (c, 2, 4, 16), torch.int16), 2, 0)
        # hmask byte i: bit s is bit 2 of value s*32 + i; a clear bit means "minus 4"
        h = _bit_planes(w[:, 0:16].view(c, 1, 16), ws.get("h", (c, 8, 16), torch.int16), 1, 2)
        q = q.view(c, 8, 16).bitwise_or_(h).view(torch.uint8).view(c, 256)
        return q.sub_(4).view(torch.int8)


def _k4_scale_min(blocks, n):
    """Q4_K/Q5_K's eight 6-bit scales and mins (bytes 4..15) as uint8 [n, 8] each.

    Bytes 0-3 hold scales 0-3 (low 6 bits) and the top 2 bits of scales 4-7,
    bytes 4-7 the same for the mins, bytes 8-11 the low 4 bits of scales 4-7
    (low nibble) and mins 4-7 (high nibble); done on the 4-byte groups as words.
    """
    w = _words(blocks, torch.int32)
    d, m, md = w[:, 1], w[:, 2], w[:, 3]
    lo6, hi2, lo4 = _rep(torch.int32, 0x3F), _rep(torch.int32, 0x30), _rep(torch.int32, 0x0F)
    sc = torch.stack((d & lo6, (md & lo4) | ((d >> 2) & hi2)), 1)
    mn = torch.stack((m & lo6, ((md >> 4) & lo4) | ((m >> 2) & hi2)), 1)
    return sc.view(torch.uint8).view(n, 8), mn.view(torch.uint8).view(n, 8)


class _Q4_K(_Codec):
    n_sub = 8
    qs_word = 2  # qs at byte 16 = int64 word 2

    def scales(self, blocks):
        n = blocks.shape[0]
        sc, mn = _k4_scale_min(blocks, n)
        a = _f32_field(blocks, 0) * sc.to(torch.float32)
        b = _f32_field(blocks, 2).neg_() * mn.to(torch.float32)  # -(dmin * m), exactly
        return a.view(n, 8, 1), b.view(n, 8, 1)

    def nibbles(self, blocks, ws):
        c = blocks.shape[0]
        # qs byte j*32 + i: low nibble is value j*64 + i, high nibble value j*64 + 32 + i
        qs = _words(blocks, torch.int64)[:, self.qs_word : self.qs_word + 16].view(c, 4, 4)
        return _split_nibbles(qs, ws.get("q", (c, 4, 2, 4), torch.int64)).view(c, 8, 4)

    def codes(self, blocks, ws):
        return self.nibbles(blocks, ws).view(torch.uint8).view(blocks.shape[0], 256)


class _Q5_K(_Q4_K):
    qs_word = 6

    def codes(self, blocks, ws):
        c = blocks.shape[0]
        q = self.nibbles(blocks, ws)
        # qh byte i: bit j is the 5th bit of value j*32 + i
        qh = _words(blocks, torch.int64)[:, 2:6].view(c, 1, 4)
        q.bitwise_or_(_bit_planes(qh, ws.get("h", (c, 8, 4), torch.int64), 1, 4))
        return q.view(torch.uint8).view(c, 256)


class _Q6_K(_Codec):
    n_sub = 16

    def scales(self, blocks):
        sc = _f32_field(blocks, 192, torch.int8, 16)
        return (_f32_field(blocks, 208) * sc).view(-1, 16, 1), None

    def codes(self, blocks, ws):
        c = blocks.shape[0]
        w = _words(blocks, torch.int16)
        # ql byte j*64 + i: low nibble -> value j*128 + i, high nibble -> value j*128 + 64 + i
        q = _split_nibbles(w[:, 0:64].view(c, 2, 32), ws.get("q", (c, 2, 2, 32), torch.int16))
        # qh byte j*32 + i: bit pair s -> bits 4-5 of value j*128 + s*32 + i
        h = _bit_planes(w[:, 64:96].view(c, 2, 1, 16), ws.get("h", (c, 2, 4, 16), torch.int16), 2, 4)
        q = q.view(c, 128).bitwise_or_(h.view(c, 128)).view(torch.uint8).view(c, 256)
        return q.sub_(32).view(torch.int8)


IQ4_KVALUES = (-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113)


def _iq4_codes(qs: torch.Tensor) -> torch.Tensor:
    """IQ4 bytes [..., 16] -> int8 codes [..., 2, 16] (low nibbles first), a strided view."""
    table = _byte_table("iq4_pairs", qs.device, lambda b: [IQ4_KVALUES[b & 15], IQ4_KVALUES[b >> 4]])
    pairs = _lookup(table, qs).view(torch.int8).view(*qs.shape, 2)
    return pairs.transpose(-1, -2)


class _IQ4_NL(_Codec):
    def scales(self, blocks):
        return _f32_field(blocks, 0).view(-1, 1, 1), None

    def codes(self, blocks, ws):
        return _iq4_codes(blocks[:, 2:18])  # [c, 2, 16]


class _IQ4_XS(_Codec):
    n_sub = 8

    def scales(self, blocks):
        n = blocks.shape[0]
        w = _words(blocks, torch.int32)[:, 0:2]  # d | scales_h, then the 4 scales_l bytes
        low = torch.empty((n, 2), dtype=torch.int32, device=blocks.device)
        _split_nibbles(w[:, 1:2], low.view(n, 2, 1))
        # scale k: low nibble from nibble k%2 of byte k//2, high 2 bits from scales_h bits 2k, 2k+1
        low = low.view(torch.uint8).view(n, 2, 4).transpose(1, 2).reshape(n, 8)
        high = ((w[:, 0:1] >> 16) >> _shifts(torch.int32, list(range(0, 16, 2)), (1, 8), blocks.device)) & 3
        sc = (low.to(torch.int32) | (high << 4)) - 32
        a = _f32_field(blocks, 0) * sc.to(torch.float32)
        return a.view(n, 8, 1), None

    def codes(self, blocks, ws):
        c = blocks.shape[0]
        return _iq4_codes(blocks[:, 8:136].view(c, 8, 16))  # [c, 8, 2, 16]


_CODECS: dict = {
    T.Q4_0: _Q4_0(), T.Q4_1: _Q4_1(), T.Q5_0: _Q5_0(), T.Q5_1: _Q5_1(), T.Q8_0: _Q8_0(),
    T.Q2_K: _Q2_K(), T.Q3_K: _Q3_K(), T.Q4_K: _Q4_K(), T.Q5_K: _Q5_K(), T.Q6_K: _Q6_K(),
    T.IQ4_NL: _IQ4_NL(), T.IQ4_XS: _IQ4_XS(),
}


# --------------------------------------------------------------------------- float stage


def _float_staged(q, a, b, out: torch.Tensor, scratch: torch.Tensor | None) -> None:
    """CPU: codes -> float32 (the output itself, or cached scratch), scale, round once."""
    f = out if scratch is None else scratch
    f.view(q.shape).copy_(q)
    f = f.view(a.shape[0], a.shape[1], -1)
    f.mul_(a)
    if b is not None:
        f.add_(b)  # a * q is exact, so this is gguf-py's one rounding
    if scratch is not None:
        out.copy_(scratch)


def _float_one_pass(q, a, b, out: torch.Tensor) -> None:
    """What the compiled CPU float stage computes: float32 products, rounded once on store."""
    o = out.view(a.shape[0], a.shape[1], -1)
    v = q.reshape(o.shape).to(torch.float32) * a
    if b is not None:
        v = v + b  # a * q is exact, so a fused multiply-add rounds the same way
    o.copy_(v)


_COMPILED: dict = {}  # (type, out dtype) -> compiled float stage, or None once compiling failed
_COMPILED_LOCK = threading.Lock()


def _compiled_stage(qtype, dtype):
    """The compiled float stage for one (type, dtype), or None where torch.compile is unavailable."""
    key = (qtype, dtype)
    if key not in _COMPILED:
        with _COMPILED_LOCK:
            if key not in _COMPILED:
                try:
                    # Dynamo caches compiled code per code object, with a recompile limit: a copy of
                    # the function per key keeps one type's compile from evicting another's.
                    # dynamic=False: full chunks all have one shape, so each key compiles once.
                    code = _float_one_pass.__code__.replace(co_name=f"_float_one_pass_{ggml_type(qtype).name}_{str(dtype)[6:]}")
                    fn = types.FunctionType(code, _float_one_pass.__globals__, code.co_name)
                    _COMPILED[key] = torch.compile(fn, dynamic=False)
                except Exception as exc:  # noqa: BLE001 - e.g. a torch built without dynamo
                    _COMPILED[key] = None
                    warnings.warn(f"twostage_i2v: compiled dequantization unavailable ({exc}); using eager torch", stacklevel=3)
    return _COMPILED[key]


def _run_compiled(qtype, dtype, q, a, b, out) -> bool:
    """Run the compiled float stage; False (and the eager path from then on) if it fails."""
    fn = _compiled_stage(qtype, dtype)
    if fn is None:
        return False
    try:
        fn(q, a, b, out)
        return True
    except Exception as exc:  # noqa: BLE001 - no C++ compiler, inductor errors: fall back, once
        _COMPILED[(qtype, dtype)] = None
        warnings.warn(
            f"twostage_i2v: torch.compile of the dequantization float stage failed ({type(exc).__name__}: "
            f"{str(exc)[:200]}); using eager torch (unset {COMPILED_ENV} to stop trying)",
            stacklevel=3,
        )
        return False


def _float_fused(q, a, b, out: torch.Tensor) -> None:
    """CUDA: one kernel, computed in float32 (the promoted type) and cast on store."""
    o = out.view(a.shape[0], a.shape[1], -1)
    q = q.reshape(o.shape)
    if b is None:
        torch.mul(q, a, out=o)
    else:
        torch.addcmul(b, q, a, out=o)


# --------------------------------------------------------------------------- entry point


def _as_bytes(data: torch.Tensor) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise TypeError(f"dequantize() needs the raw bytes as a torch.uint8 tensor, not {type(data).__name__}")
    flat = data.reshape(-1)
    return flat if flat.dtype == torch.uint8 else flat.view(torch.uint8)


def _empty(shape, dtype, device) -> torch.Tensor:
    n = 1
    for s in shape:
        n *= s
    nbytes = n * torch.empty((), dtype=dtype).element_size()
    if device.type == "cpu" and nbytes >= _HUGE_PAGE_BYTES:
        # numpy memory is madvise(MADV_HUGEPAGE)d: 512x fewer page faults on first touch
        return torch.from_numpy(np.empty(nbytes, dtype=np.uint8)).view(dtype).view(shape)
    return torch.empty(shape, dtype=dtype, device=device)


def dequantize(
    data: torch.Tensor, qtype, shape, dtype: torch.dtype = torch.float32, *, fused: bool | None = None, compiled: bool | None = None
) -> torch.Tensor:
    """The values of one GGUF tensor.

    ``data``: its raw bytes, a uint8 tensor of any shape (e.g. a memory-mapped
    [rows, bytes_per_row] view), on CPU or CUDA. ``qtype``: a
    ``gguf.GGMLQuantizationType`` (or its int value or name). ``shape``: the
    logical shape, any number of dims. Returns a new tensor of ``shape`` in
    ``dtype`` (a floating dtype) on ``data``'s device; it never aliases
    ``data``. ``fused`` picks the float stage (default: fused off CPU) and
    exists so tests can check both on any device.

    Raises UnsupportedQuantType for a type without a dequantizer and
    ValueError when the byte count does not fit ``shape``.
    """
    t = ggml_type(qtype)
    shape = tuple(int(s) for s in shape)
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dequantize() output dtype must be a floating dtype such as torch.bfloat16, not {dtype}")
    raw = _as_bytes(data)
    expected = quantized_nbytes(t.qtype, shape)
    if raw.numel() != expected:
        raise ValueError(
            f"{t.name} tensor of shape {shape} needs {expected} bytes "
            f"({expected // t.type_size} blocks of {t.type_size}), but got {raw.numel()} bytes"
        )
    out = _empty(shape, dtype, raw.device)
    if out.numel() == 0:
        return out
    if t.is_float:
        out.copy_(_words(raw.view(1, -1), _FLOAT_STORAGE[t.qtype]).view(shape))  # float16 -> bfloat16 via float32: one rounding
        return out

    codec = _CODECS[t.qtype]
    on_cpu = raw.device.type == "cpu"
    if fused is None:
        fused = not on_cpu
    blocks = raw.view(-1, t.type_size)
    n_blocks = blocks.shape[0]
    out_blocks = out.view(n_blocks, t.block_size)
    chunk = max(1, (CPU_CHUNK_VALUES if on_cpu else DEVICE_CHUNK_VALUES) // t.block_size)
    if compiled is None:
        compiled = os.environ.get(COMPILED_ENV, "") == "1"
    # inside an outer torch.compile trace the eager ops are what should be traced
    compiled = compiled and on_cpu and not fused and not torch.compiler.is_compiling()
    ws = _Workspace(raw.device)
    scratch = None
    if not fused and dtype != torch.float32:
        scratch = torch.empty(min(chunk, n_blocks) * t.block_size, dtype=torch.float32, device=raw.device)
    for b0 in range(0, n_blocks, chunk):
        b1 = min(n_blocks, b0 + chunk)
        chunk_blocks = blocks[b0:b1]
        # scales per chunk: the chunk's blocks are read from memory once, then reused from cache
        a, b = codec.scales(chunk_blocks)
        q = codec.codes(chunk_blocks, ws)
        if fused:
            _float_fused(q, a, b, out_blocks[b0:b1])
        elif compiled and b1 - b0 == chunk and _run_compiled(t.qtype, dtype, q, a, b, out_blocks[b0:b1]):
            pass  # full chunks only: one shape, one compile; the last partial chunk goes eager
        else:
            _float_staged(q, a, b, out_blocks[b0:b1], None if scratch is None else scratch[: (b1 - b0) * t.block_size].view(b1 - b0, t.block_size))
    return out
