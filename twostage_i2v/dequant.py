"""Dequantize one GGUF tensor's raw bytes with torch ops, on CPU or CUDA.

Results equal gguf-py's ``gguf.quants.dequantize`` bit for bit in float32;
bfloat16/float16 results are that float32 result rounded once. This holds
whatever the order of operations, which is what leaves room to be fast: in
every supported type a value is ``a * q + b`` where ``q`` is a small integer
code and ``a`` a per-(sub)block scale whose product with ``q`` is exact in
float32 (float16 scale: 11 significant bits; sub-scale <= 6 bits; code <= 7
bits: at most 24 bits in all), so only the ``+ b`` of the types with a
minimum (Q4_1, Q5_1, Q2_K, Q4_K, Q5_K) rounds, once, as gguf-py's does.

How it is laid out for speed:

* per type, ``scales`` turns the whole tensor's scale fields into float32
  ``a`` (and ``b``) once: small arrays, 1/16 to 1/32 of the values;
* ``codes`` unpacks the bit fields of a chunk of blocks into one byte per
  value (uint8/int8 bit ops, byte lookup tables for scattered bits), in
  value order;
* the float stage then makes float32 (convert, multiply, add) and, for a
  narrower dtype, rounds once into the output.

On CPU the work goes in chunks of about two million values so the byte
codes and float32 scratch stay in cache and no output-sized temporary is
allocated (fresh allocations of tens of MB cost page faults that dwarf the
arithmetic). On CUDA, mixed-dtype ops cast inside the kernel, so the float
stage is a single ``mul``/``addcmul`` straight into the output dtype.
"""

from __future__ import annotations

import torch

from .ggml_types import QK_K, T, UnsupportedQuantType, ggml_type, quantized_nbytes

__all__ = ["dequantize", "UnsupportedQuantType"]

CPU_CHUNK_VALUES = 1 << 21
DEVICE_CHUNK_VALUES = 1 << 24

_FLOAT_STORAGE = {T.F32: torch.float32, T.F16: torch.float16, T.BF16: torch.bfloat16}


# --------------------------------------------------------------------------- helpers


def _f32_field(blocks: torch.Tensor, offset: int, dtype=torch.float16, count: int = 1) -> torch.Tensor:
    """Field ``offset`` of every block read as ``dtype`` -> float32 [n, count]."""
    width = torch.empty((), dtype=dtype).element_size() * count
    field = blocks[:, offset : offset + width]
    try:
        view = field.view(dtype)
    except RuntimeError:  # odd storage offset: copy the (small) field first
        view = field.contiguous().view(dtype)
    return view.to(torch.float32)


_LUTS: dict = {}


def _lut(name: str, device: torch.device, build) -> torch.Tensor:
    key = (name, device)
    lut = _LUTS.get(key)
    if lut is None:
        lut = _LUTS[key] = build().to(device)
    return lut


def _byte_table(name: str, device, per_byte) -> torch.Tensor:
    """A lookup table: byte value -> the bytes ``per_byte(b)``, as one int16/int32/int64 word."""

    def build():
        rows = torch.tensor([per_byte(b) for b in range(256)], dtype=torch.int16).to(torch.uint8)
        word = {2: torch.int16, 4: torch.int32, 8: torch.int64}[rows.shape[1]]
        return rows.view(word).view(256)

    return _lut(name, device, build)


def _lookup(table: torch.Tensor, index_bytes: torch.Tensor) -> torch.Tensor:
    """``table[index_bytes]`` as raw bytes: [*index_bytes.shape, table word size]."""
    idx = index_bytes.reshape(-1).to(torch.int32)
    words = torch.index_select(table, 0, idx)
    return words.view(torch.uint8).view(*index_bytes.shape, table.element_size())


def _shifts(name: str, device, values) -> torch.Tensor:
    return _lut(name, device, lambda: torch.tensor(values, dtype=torch.uint8))


class _Workspace:
    """Byte buffers reused by every chunk of one call (sliced to the chunk's size)."""

    def __init__(self, device):
        self.device = device
        self.bufs: dict[str, torch.Tensor] = {}

    def u8(self, name: str, *shape: int) -> torch.Tensor:
        n = 1
        for s in shape:
            n *= s
        buf = self.bufs.get(name)
        if buf is None or buf.numel() < n:
            buf = self.bufs[name] = torch.empty(n, dtype=torch.uint8, device=self.device)
        return buf[:n].view(shape)


def _nibbles_into(src: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> None:
    torch.bitwise_and(src, 15, out=lo)
    torch.bitwise_right_shift(src, 4, out=hi)


# --------------------------------------------------------------------------- types
#
# scales(blocks)  -> (a, b): float32 [n_blocks, n_sub, 1]; b is None or added
# codes(chunk, ws) -> integer codes [c, n_sub, ...] in value order (uint8 or int8)
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
        return blocks[:, 2:].view(torch.int8).view(-1, 1, 32)


class _Q4_0(_Codec):
    qs_at = 2

    def scales(self, blocks):
        return _f32_field(blocks, 0).view(-1, 1, 1), None

    def nibbles(self, blocks, ws):
        q = ws.u8("q", blocks.shape[0], 2, 16)
        qs = blocks[:, self.qs_at : self.qs_at + 16]
        _nibbles_into(qs, q[:, 0], q[:, 1])
        return q

    def codes(self, blocks, ws):
        return self.nibbles(blocks, ws).sub_(8).view(torch.int8).view(-1, 1, 32)


class _Q4_1(_Q4_0):
    qs_at = 4

    def scales(self, blocks):
        return _f32_field(blocks, 0).view(-1, 1, 1), _f32_field(blocks, 2).view(-1, 1, 1)

    def codes(self, blocks, ws):
        return self.nibbles(blocks, ws).view(-1, 1, 32)


def _high_bit_table(bias: int):
    # byte -> 8 bytes: (bit k of the byte) * 16 + bias, for k = 0..7
    return lambda b: [(((b >> k) & 1) << 4) + bias for k in range(8)]


class _Q5_0(_Q4_0):
    qs_at, qh_at, bias = 6, 2, -16

    def scales(self, blocks):
        return _f32_field(blocks, 0).view(-1, 1, 1), None

    def codes(self, blocks, ws):
        q = self.nibbles(blocks, ws).view(-1, 32)
        # qh is a little-endian uint32: bit i is the 5th bit of value i, i.e. bit i % 8 of byte i // 8
        table = _byte_table(f"q5_high{self.bias}", blocks.device, _high_bit_table(self.bias))
        high = _lookup(table, blocks[:, self.qh_at : self.qh_at + 4]).view(-1, 32)
        q.add_(high)  # byte arithmetic wraps: low | high << 4, minus 16 for Q5_0
        return q.view(torch.int8).view(-1, 1, 32) if self.bias else q.view(-1, 1, 32)


class _Q5_1(_Q5_0):
    qs_at, qh_at, bias = 8, 4, 0

    def scales(self, blocks):
        return _f32_field(blocks, 0).view(-1, 1, 1), _f32_field(blocks, 2).view(-1, 1, 1)


class _Q2_K(_Codec):
    n_sub = 16

    def scales(self, blocks):
        sc = blocks[:, 0:16]
        d, dmin = _f32_field(blocks, 80), _f32_field(blocks, 82)
        a = d * (sc & 15).to(torch.float32)
        m = dmin * (sc >> 4).to(torch.float32)
        return a.view(-1, 16, 1), m.neg_().view(-1, 16, 1)

    def codes(self, blocks, ws):
        c = blocks.shape[0]
        q = ws.u8("q", c, 2, 4, 32)
        # byte j*32 + i holds values j*128 + s*32 + i in its bit pairs s = 0..3
        qs = blocks[:, 16:80].view(c, 2, 1, 32)
        torch.bitwise_right_shift(qs, _shifts("0246", blocks.device, [0, 2, 4, 6]).view(1, 1, 4, 1), out=q)
        return q.bitwise_and_(3).view(c, 16, 16)


class _Q3_K(_Codec):
    n_sub = 16

    def scales(self, blocks):
        n = blocks.shape[0]
        raw = blocks[:, 96:108]
        # 16 six-bit scales: low nibbles in bytes 0..7 (both halves), high bit pairs in bytes 8..11
        low = torch.stack((raw[:, 0:8] & 15, raw[:, 0:8] >> 4), 1).view(n, 16)
        high = torch.stack([(raw[:, 8:12] >> s) & 3 for s in (0, 2, 4, 6)], 1).view(n, 16)
        sc = (low | (high << 4)).view(torch.int8) - 32
        a = _f32_field(blocks, 108) * sc.to(torch.float32)
        return a.view(n, 16, 1), None

    def codes(self, blocks, ws):
        c = blocks.shape[0]
        dev = blocks.device
        q = ws.u8("q", c, 2, 4, 32)
        qs = blocks[:, 32:96].view(c, 2, 1, 32)
        torch.bitwise_right_shift(qs, _shifts("0246", dev, [0, 2, 4, 6]).view(1, 1, 4, 1), out=q)
        q.bitwise_and_(3)
        # bit s of hmask byte i belongs to value s*32 + i; a clear bit means "minus 4"
        h = ws.u8("h", c, 8, 32)
        torch.bitwise_right_shift(blocks[:, 0:32].view(c, 1, 32), _shifts("0-7", dev, list(range(8))).view(1, 8, 1), out=h)
        h.bitwise_and_(1).bitwise_left_shift_(2)
        q = q.view(c, 8, 32).bitwise_or_(h).sub_(4)
        return q.view(torch.int8).view(c, 16, 16)


def _k4_scale_min(blocks):
    """The eight 6-bit scales and mins of Q4_K/Q5_K (bytes 4..15), as gguf-py unpacks them."""
    s = blocks[:, 4:16]
    d, m, md = s[:, 0:4], s[:, 4:8], s[:, 8:12]
    sc = torch.cat((d & 63, (md & 15) | ((d >> 2) & 48)), 1)
    mn = torch.cat((m & 63, (md >> 4) | ((m >> 2) & 48)), 1)
    return sc, mn


class _Q4_K(_Codec):
    n_sub = 8
    qs_at = 16

    def scales(self, blocks):
        sc, mn = _k4_scale_min(blocks)
        a = _f32_field(blocks, 0) * sc.to(torch.float32)
        m = _f32_field(blocks, 2) * mn.to(torch.float32)
        return a.view(-1, 8, 1), m.neg_().view(-1, 8, 1)

    def nibbles(self, blocks, ws):
        c = blocks.shape[0]
        q = ws.u8("q", c, 4, 2, 32)
        # byte j*32 + i: low nibble is value j*64 + i, high nibble value j*64 + 32 + i
        qs = blocks[:, self.qs_at : self.qs_at + 128].view(c, 4, 32)
        _nibbles_into(qs, q[:, :, 0], q[:, :, 1])
        return q.view(c, 8, 32)

    def codes(self, blocks, ws):
        return self.nibbles(blocks, ws)


class _Q5_K(_Q4_K):
    qs_at = 48

    def codes(self, blocks, ws):
        c = blocks.shape[0]
        q = self.nibbles(blocks, ws)
        # bit j of qh byte i is the 5th bit of value j*32 + i
        h = ws.u8("h", c, 8, 32)
        torch.bitwise_right_shift(blocks[:, 16:48].view(c, 1, 32), _shifts("0-7", blocks.device, list(range(8))).view(1, 8, 1), out=h)
        h.bitwise_and_(1).bitwise_left_shift_(4)
        return q.bitwise_or_(h)


class _Q6_K(_Codec):
    n_sub = 16

    def scales(self, blocks):
        sc = _f32_field(blocks, 192, torch.int8, 16)
        return (_f32_field(blocks, 208) * sc).view(-1, 16, 1), None

    def codes(self, blocks, ws):
        c = blocks.shape[0]
        dev = blocks.device
        q = ws.u8("q", c, 2, 2, 64)
        # ql byte j*64 + i: low nibble -> value j*128 + i, high nibble -> j*128 + 64 + i
        _nibbles_into(blocks[:, 0:128].view(c, 2, 64), q[:, :, 0], q[:, :, 1])
        # qh byte j*32 + i: bit pair s -> the top two bits of value j*128 + s*32 + i
        h = ws.u8("h", c, 2, 4, 32)
        torch.bitwise_right_shift(blocks[:, 128:192].view(c, 2, 1, 32), _shifts("0246", dev, [0, 2, 4, 6]).view(1, 1, 4, 1), out=h)
        h.bitwise_and_(3).bitwise_left_shift_(4)
        q = q.view(c, 256).bitwise_or_(h.view(c, 256)).sub_(32)
        return q.view(torch.int8).view(c, 16, 16)


IQ4_KVALUES = (-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113)


def _iq4_pairs(b: int):
    # byte -> (kvalue of its low nibble, kvalue of its high nibble) as two int8 bytes
    return [IQ4_KVALUES[b & 15], IQ4_KVALUES[b >> 4]]


def _iq4_codes(qs: torch.Tensor) -> torch.Tensor:
    """[..., 16] IQ4 bytes -> int8 codes [..., 2, 16] (low nibbles first), a strided view."""
    table = _byte_table("iq4_pairs", qs.device, _iq4_pairs)
    pairs = _lookup(table, qs).view(torch.int8)  # [..., 16, 2]
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
        low = blocks[:, 4:8]
        low = torch.stack((low & 15, low >> 4), 2).view(n, 8)
        high16 = blocks[:, 2].to(torch.int32) | (blocks[:, 3].to(torch.int32) << 8)
        shifts = torch.arange(0, 16, 2, dtype=torch.int32, device=blocks.device)
        high = ((high16.view(n, 1) >> shifts) & 3).to(torch.uint8)
        sc = (low | (high << 4)).view(torch.int8) - 32
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


def _expand(s: torch.Tensor | None, q: torch.Tensor) -> torch.Tensor | None:
    """Scale [c, n_sub, 1] shaped to broadcast against codes [c, n_sub, ...]."""
    if s is None:
        return None
    return s.view(*s.shape, *([1] * (q.dim() - 3)))


def _float_staged(q, a, b, out: torch.Tensor, scratch: torch.Tensor | None) -> None:
    """CPU: convert into float32 (the output itself, or cached scratch), scale, round once."""
    f = (out if scratch is None else scratch).view(q.shape)
    f.copy_(q)
    f.mul_(a)
    if b is not None:
        f.add_(b)  # a * q is exact, so this is gguf-py's one rounding
    if scratch is not None:
        out.view(q.shape).copy_(f)


def _float_fused(q, a, b, out: torch.Tensor) -> None:
    """CUDA: one kernel, computed in float32 (the promoted type) and cast on store."""
    o = out.view(q.shape)
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


def dequantize(data: torch.Tensor, qtype, shape, dtype: torch.dtype = torch.float32, *, fused: bool | None = None) -> torch.Tensor:
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
    out = torch.empty(shape, dtype=dtype, device=raw.device)
    if out.numel() == 0:
        return out
    if t.is_float:
        storage = _FLOAT_STORAGE[t.qtype]
        try:
            values = raw.view(storage)
        except RuntimeError:  # odd storage offset
            values = raw.clone().view(storage)
        out.copy_(values.view(shape))  # float16 -> bfloat16 goes through float32: one rounding
        return out

    codec = _CODECS[t.qtype]
    on_cpu = raw.device.type == "cpu"
    if fused is None:
        fused = not on_cpu
    blocks = raw.view(-1, t.type_size)
    n_blocks = blocks.shape[0]
    a, b = codec.scales(blocks)
    out_blocks = out.view(n_blocks, t.block_size)
    chunk = max(1, (CPU_CHUNK_VALUES if on_cpu else DEVICE_CHUNK_VALUES) // t.block_size)
    ws = _Workspace(raw.device)
    scratch = None
    if not fused and dtype != torch.float32:
        scratch = torch.empty(min(chunk, n_blocks) * t.block_size, dtype=torch.float32, device=raw.device)
    for b0 in range(0, n_blocks, chunk):
        b1 = min(n_blocks, b0 + chunk)
        q = codec.codes(blocks[b0:b1], ws)
        ca = _expand(a[b0:b1], q)
        cb = _expand(b[b0:b1] if b is not None else None, q)
        if fused:
            _float_fused(q, ca, cb, out_blocks[b0:b1])
        else:
            _float_staged(q, ca, cb, out_blocks[b0:b1], None if scratch is None else scratch[: (b1 - b0) * t.block_size])
    return out
