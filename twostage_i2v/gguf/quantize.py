"""Quantize float32 values into GGML block formats: the raw bytes a GGUF file stores.

* F32, F16: plain copies/casts.
* BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0: gguf-py's numpy port of llama.cpp's
  reference quantizers (``gguf.quants.quantize``).
* Q2_K, Q3_K, Q4_K, Q5_K, Q6_K: gguf-py cannot produce these, so this module
  ports llama.cpp's reference algorithms (``quantize_row_q{2..6}_K_ref`` with
  their helpers ``make_qkx2_quants``, ``make_q3_quants`` and ``make_qx_quants``,
  ggml/src/ggml-quants.c) to numpy. The scalar C loops over 256-value
  super-blocks become array operations over all super-blocks at once; only
  the small fixed loops (scale candidates, coordinate-descent passes, the 16
  or 32 positions inside a group) stay Python loops. Arithmetic stays in float32 and rounding is
  round-half-to-even like ``nearest_int``, and sums accumulate in the C
  loops' order, so the bytes are the reference's (checked byte for byte, during
  development, against the compiled C reference on Gaussian, heavy-tailed, constant, all-zero and
  half-zero data).

The byte layout of every type is the one gguf-py's ``gguf.quants.dequantize``
(and ggml) reads. ``python -m twostage_i2v.gguf.quantize`` prints the
Gaussian-weight RMSE of every type.
"""

from __future__ import annotations

import numpy as np

QK_K = 256
GROUP_MAX_EPS = 1e-15
# Super-blocks per vectorised pass: each float32 temporary is then 1 MiB, which
# measured about twice as fast as 4096 (cache) and bounds memory for any tensor size.
_CHUNK_SUPERBLOCKS = 1024

_F32 = np.float32


def _gguf():
    import gguf

    return gguf


def as_qtype(qtype):
    """A ``GGMLQuantizationType`` from the enum itself, its int value or its name ("Q4_K")."""
    T = _gguf().GGMLQuantizationType
    if isinstance(qtype, T):
        return qtype
    if isinstance(qtype, str):
        try:
            return T[qtype.upper()]
        except KeyError:
            raise ValueError(f"unknown GGML type {qtype!r}; quantize() supports {', '.join(supported_names())}") from None
    try:
        return T(int(qtype))
    except (ValueError, TypeError):
        raise ValueError(f"unknown GGML type {qtype!r}; quantize() supports {', '.join(supported_names())}") from None


def supported_names() -> list[str]:
    return ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]


def block_size(qtype) -> int:
    """Values per block (1 for F32/F16/BF16, 32 for legacy types, 256 for K-quants)."""
    return _gguf().GGML_QUANT_SIZES[as_qtype(qtype)][0]


def bits_per_weight(qtype) -> float:
    values, nbytes = _gguf().GGML_QUANT_SIZES[as_qtype(qtype)]
    return 8.0 * nbytes / values


def row_bytes(qtype, cols: int) -> int:
    values, nbytes = _gguf().GGML_QUANT_SIZES[as_qtype(qtype)]
    return cols // values * nbytes


# --------------------------------------------------------------------------- helpers


def _rint(x):
    # nearest_int() adds 1.5 * 2**23 in float32: round half to even, as np.rint.
    return np.rint(x)


def _fp16(x) -> np.ndarray:
    """float32 -> IEEE half (round to nearest even, like GGML_FP32_TO_FP16)."""
    return np.asarray(x, dtype=_F32).astype(np.float16)


def _abs_argmax_value(x: np.ndarray, axis: int = 0) -> np.ndarray:
    # The C loops keep the first element with the largest |x| (strict >).
    idx = np.expand_dims(np.argmax(np.abs(x), axis=axis), axis)
    return np.take_along_axis(x, idx, axis=axis).squeeze(axis)


def _sum(a: np.ndarray) -> np.ndarray:
    """Sums over the positions of each group, accumulated in order in float32.

    The group helpers below hold data positions-first ([n, G], one row per
    position inside a group, one column per group). numpy reduces a C-ordered
    array along its outer axis by adding row after row, which is the C loops'
    left-to-right order; a pairwise sum (what ``axis=1`` of [G, n] gives)
    rounds differently and flips near-tie scale choices in a few percent of
    blocks.
    """
    return a.sum(axis=0)


def _positions_first(x: np.ndarray, n: int) -> np.ndarray:
    """[nb, 256] super-blocks -> [n, nb * 256 / n] groups of n consecutive values."""
    return np.ascontiguousarray(x.reshape(-1, n).T)


def _safe(d: np.ndarray, ok: np.ndarray) -> np.ndarray:
    return np.where(ok, d, _F32(1))


def _make_qkx2_quants(x, w, nmax, rmin, rdelta, nstep, use_mad):
    """Asymmetric (scale, min) fit per group, groups as the columns of ``x`` [n, G].

    Returns (scale [G], the_min [G] >= 0, L [n, G] in 0..nmax) such that
    x ~= scale * L - the_min, searching nstep+1 candidate scales.
    """
    nmax = _F32(nmax)
    xmax = x.max(axis=0)
    mn = np.minimum(x.min(axis=0), _F32(0))
    sum_w = _sum(w)
    sum_x = _sum(w * x)
    flat = xmax == mn

    def err(d):
        return np.abs(d) if use_mad else d * d

    span = _safe(xmax - mn, ~flat)
    iscale = nmax / span
    scale = _F32(1) / iscale
    L = np.clip(_rint(iscale * (x - mn)), 0, nmax)
    best = _sum(w * err(scale * L + mn - x))

    for step in range(nstep + 1):
        # The reference re-centres on the best min found so far (mn changes).
        span_now = xmax - mn
        live = ~flat & (span_now > 0)
        iscale = (_F32(rmin) + _F32(rdelta) * _F32(step) + nmax) / _safe(span_now, live)
        Laux = np.clip(_rint(iscale * (x - mn)), 0, nmax)
        wl = w * Laux
        sum_l = _sum(wl)
        sum_l2 = _sum(wl * Laux)
        sum_xl = _sum(wl * x)
        D = sum_w * sum_l2 - sum_l * sum_l
        ok = live & (D > 0)
        Ds = _safe(D, ok)
        this_scale = (sum_w * sum_xl - sum_x * sum_l) / Ds
        this_min = (sum_l2 * sum_x - sum_l * sum_xl) / Ds
        pos = this_min > 0
        this_min = np.where(pos, _F32(0), this_min)
        this_scale = np.where(pos, sum_xl / _safe(sum_l2, sum_l2 != 0), this_scale)
        cur = _sum(w * err(this_scale * Laux + this_min - x))
        better = ok & (cur < best)
        L = np.where(better, Laux, L)
        best = np.where(better, cur, best)
        scale = np.where(better, this_scale, scale)
        mn = np.where(better, this_min, mn)

    L = np.where(flat, _F32(0), L)
    scale = np.where(flat, _F32(0), scale)
    return scale.astype(_F32), (-mn).astype(_F32), L


def _make_q3_quants(x, nmax):
    """Symmetric fit with weights x^2 and up to 5 coordinate-descent passes (do_rmse=true).

    ``x`` [n, G]; returns (scale [G], L [n, G] in 0..2*nmax-1), x ~= scale * (L - nmax).
    """
    nmax = _F32(nmax)
    n = x.shape[0]
    mx = _abs_argmax_value(x)
    zero = np.abs(mx) < GROUP_MAX_EPS
    iscale = -nmax / _safe(mx, ~zero)
    L = np.clip(_rint(iscale * x), -nmax, nmax - 1)
    w = x * x
    wx = w * x
    sumlx = _sum(wx * L)
    suml2 = _sum(w * L * L)
    # The reference stops a group early once a pass changes nothing; a pass over
    # an unchanged state changes nothing again, so running all 5 is equivalent.
    for _ in range(5):
        for i in range(n):
            wi, xi, wxi, Li = w[i], x[i], wx[i], L[i]
            slx = sumlx - wxi * Li
            sl2 = suml2 - wi * Li * Li
            cand = slx > 0
            new_l = np.clip(_rint(xi * sl2 / _safe(slx, cand)), -nmax, nmax - 1)
            slx_new = slx + wxi * new_l
            sl2_new = sl2 + wi * new_l * new_l
            take = cand & (new_l != Li) & (sl2_new > 0) & (slx_new * slx_new * suml2 > sumlx * sumlx * sl2_new)
            L[i] = np.where(take, new_l, Li)
            sumlx = np.where(take, slx_new, sumlx)
            suml2 = np.where(take, sl2_new, suml2)
    scale = np.where(suml2 > 0, sumlx / _safe(suml2, suml2 > 0), _F32(0))
    L = np.where(zero, _F32(0), L + nmax)
    scale = np.where(zero, _F32(0), scale)
    return scale.astype(_F32), L


def _make_qx_quants(x, nmax):
    """Symmetric fit with weights x^2, 19 candidate scales (rmse_type=1, no imatrix).

    ``x`` [n, G]; returns (scale [G], L [n, G] in 0..2*nmax-1), x ~= scale * (L - nmax).
    """
    nmax = _F32(nmax)
    mx = _abs_argmax_value(x)
    zero = np.abs(mx) < GROUP_MAX_EPS
    mxs = _safe(mx, ~zero)
    w = x * x
    wx = w * x

    def trial(iscale):
        l = np.clip(_rint(iscale * x), -nmax, nmax - 1)
        return l, _sum(wx * l), _sum(w * l * l)

    L, sumlx, suml2 = trial(-nmax / mxs)
    scale = np.where(suml2 != 0, sumlx / _safe(suml2, suml2 != 0), _F32(0))
    best = scale * sumlx
    for step in range(-9, 10):
        if step == 0:
            continue
        l, slx, sl2 = trial(-(nmax + _F32(0.1) * _F32(step)) / mxs)
        better = (sl2 > 0) & (slx * slx > best * sl2)
        L = np.where(better, l, L)
        scale = np.where(better, slx / _safe(sl2, sl2 > 0), scale)
        best = np.where(better, scale * slx, best)
    L = np.where(zero, _F32(0), L + nmax)
    scale = np.where(zero, _F32(0), scale)
    return scale.astype(_F32), L


def _pack_2bit(L: np.ndarray) -> np.ndarray:
    """[nb, 256] values 0..3 -> [nb, 64] bytes: byte l of each 128-half holds L[l + 32k] at bits 2k."""
    nb = L.shape[0]
    q = L.reshape(nb, 2, 4, 32).astype(np.uint8)
    out = q[:, :, 0] | (q[:, :, 1] << 2) | (q[:, :, 2] << 4) | (q[:, :, 3] << 6)
    return out.reshape(nb, 64)


def _pack_k4_scales(ls: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """Eight 6-bit scales and mins -> the 12-byte layout of Q4_K/Q5_K (get_scale_min_k4)."""
    ls = ls.astype(np.uint8)
    lm = lm.astype(np.uint8)
    out = np.empty((ls.shape[0], 12), dtype=np.uint8)
    out[:, 0:4] = ls[:, 0:4] | ((ls[:, 4:8] >> 4) << 6)
    out[:, 4:8] = lm[:, 0:4] | ((lm[:, 4:8] >> 4) << 6)
    out[:, 8:12] = (ls[:, 4:8] & 0xF) | ((lm[:, 4:8] & 0xF) << 4)
    return out


def _u8(a16: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a16).view(np.uint8).reshape(a16.shape[0], -1)


# --------------------------------------------------------------------------- K-quants


def _quantize_q2_k(blocks: np.ndarray) -> np.ndarray:
    nb = blocks.shape[0]
    xt = _positions_first(blocks, 16)
    scales, mins, L = _make_qkx2_quants(xt, np.abs(xt), 3, -0.5, 0.1, 15, True)
    scales, mins, L = scales.reshape(nb, 16), mins.reshape(nb, 16), L.T.reshape(nb, 16, 16)
    x = blocks.reshape(nb, 16, 16)

    max_scale = np.maximum(scales.max(axis=1), _F32(0))
    max_min = np.maximum(mins.max(axis=1), _F32(0))
    has_s, has_m = max_scale > 0, max_min > 0
    q4scale = _F32(15)
    ls = np.clip(_rint(np.where(has_s, q4scale / _safe(max_scale, has_s), 0)[:, None] * scales), 0, 15)
    lm = np.clip(_rint(np.where(has_m, q4scale / _safe(max_min, has_m), 0)[:, None] * mins), 0, 15)
    d16 = _fp16(np.where(has_s, max_scale / q4scale, 0))
    dmin16 = _fp16(np.where(has_m, max_min / q4scale, 0))

    d = d16.astype(_F32)[:, None] * ls
    dm = dmin16.astype(_F32)[:, None] * lm
    nz = d != 0
    Lq = np.clip(_rint((x + dm[..., None]) / _safe(d, nz)[..., None]), 0, 3)
    L = np.where(nz[..., None], Lq, L).reshape(nb, QK_K)

    scale_bytes = (ls.astype(np.uint8) | (lm.astype(np.uint8) << 4))
    return np.concatenate([scale_bytes, _pack_2bit(L), _u8(d16[:, None]), _u8(dmin16[:, None])], axis=1)


def _quantize_q3_k(blocks: np.ndarray) -> np.ndarray:
    nb = blocks.shape[0]
    scales, L = _make_q3_quants(_positions_first(blocks, 16), 4)
    scales, L = scales.reshape(nb, 16), L.T.reshape(nb, 16, 16)
    x = blocks.reshape(nb, 16, 16)

    max_scale = _abs_argmax_value(scales, axis=1)
    has = max_scale != 0
    iscale = np.where(has, _F32(-32) / _safe(max_scale, has), _F32(0))
    l6 = np.clip(_rint(iscale[:, None] * scales), -32, 31) + 32
    l6 = np.where(has[:, None], l6, 0).astype(np.uint8)  # memset(scales, 0) when all-zero
    d16 = _fp16(np.where(has, _F32(1) / _safe(iscale, has), 0))

    dq = d16.astype(_F32)[:, None] * (l6.astype(_F32) - 32)
    nz = dq != 0
    Lq = np.clip(_rint(x / _safe(dq, nz)[..., None]), -4, 3) + 4
    L = np.where(nz[..., None], Lq, L).reshape(nb, QK_K).astype(np.uint8)

    hi = L > 3
    L = L - 4 * hi.astype(np.uint8)
    # Bit b of hmask[m] is the high bit of value 32*b + m.
    hmask = (hi.reshape(nb, 8, 32).astype(np.uint8) << np.arange(8, dtype=np.uint8)[None, :, None]).sum(
        axis=1, dtype=np.uint8
    )
    low = l6 & 0xF
    high = l6 >> 4
    scale_bytes = np.empty((nb, 12), dtype=np.uint8)
    scale_bytes[:, 0:8] = low[:, 0:8] | (low[:, 8:16] << 4)
    hq = high.reshape(nb, 4, 4)  # [nb, j // 4, j % 4]
    scale_bytes[:, 8:12] = hq[:, 0] | (hq[:, 1] << 2) | (hq[:, 2] << 4) | (hq[:, 3] << 6)
    return np.concatenate([hmask, _pack_2bit(L), scale_bytes, _u8(d16[:, None])], axis=1)


def _quantize_q45_k(blocks: np.ndarray, nmax: int, rmin: float, rdelta: float, nstep: int):
    nb = blocks.shape[0]
    xt = _positions_first(blocks, 32)
    av_x = np.sqrt(_sum(xt * xt) / _F32(32))
    w = av_x + np.abs(xt)
    scales, mins, L = _make_qkx2_quants(xt, w, nmax, rmin, rdelta, nstep, False)
    scales, mins, L = scales.reshape(nb, 8), mins.reshape(nb, 8), L.T.reshape(nb, 8, 32)
    x = blocks.reshape(nb, 8, 32)

    max_scale = np.maximum(scales.max(axis=1), _F32(0))
    max_min = np.maximum(mins.max(axis=1), _F32(0))
    inv_scale = np.where(max_scale > 0, _F32(63) / _safe(max_scale, max_scale > 0), _F32(0))
    inv_min = np.where(max_min > 0, _F32(63) / _safe(max_min, max_min > 0), _F32(0))
    ls = np.clip(_rint(inv_scale[:, None] * scales), 0, 63)
    lm = np.clip(_rint(inv_min[:, None] * mins), 0, 63)
    d16 = _fp16(max_scale / _F32(63))
    dmin16 = _fp16(max_min / _F32(63))

    d = d16.astype(_F32)[:, None] * ls
    dm = dmin16.astype(_F32)[:, None] * lm
    nz = d != 0
    Lq = np.clip(_rint((x + dm[..., None]) / _safe(d, nz)[..., None]), 0, nmax)
    L = np.where(nz[..., None], Lq, L).reshape(nb, QK_K).astype(np.uint8)
    head = np.concatenate([_u8(d16[:, None]), _u8(dmin16[:, None]), _pack_k4_scales(ls, lm)], axis=1)
    return head, L


def _quantize_q4_k(blocks: np.ndarray) -> np.ndarray:
    head, L = _quantize_q45_k(blocks, 15, -1.0, 0.1, 20)
    q = L.reshape(-1, 4, 2, 32)
    qs = (q[:, :, 0] | (q[:, :, 1] << 4)).reshape(-1, 128)
    return np.concatenate([head, qs], axis=1)


def _quantize_q5_k(blocks: np.ndarray) -> np.ndarray:
    head, L = _quantize_q45_k(blocks, 31, -0.5, 0.1, 15)
    nb = L.shape[0]
    # Bit s of qh[j] is the 5th bit of value 32*s + j.
    qh = ((L.reshape(nb, 8, 32) >> 4) << np.arange(8, dtype=np.uint8)[None, :, None]).sum(axis=1, dtype=np.uint8)
    q = (L & 0xF).reshape(nb, 4, 2, 32)
    qs = (q[:, :, 0] | (q[:, :, 1] << 4)).reshape(nb, 128)
    return np.concatenate([head, qh, qs], axis=1)


def _quantize_q6_k(blocks: np.ndarray) -> np.ndarray:
    nb = blocks.shape[0]
    scales, L = _make_qx_quants(_positions_first(blocks, 16), 32)
    scales, L = scales.reshape(nb, 16), L.T.reshape(nb, 16, 16)
    x = blocks.reshape(nb, 16, 16)

    max_scale = _abs_argmax_value(scales, axis=1)
    live = np.abs(max_scale) >= GROUP_MAX_EPS
    iscale = np.where(live, _F32(-128) / _safe(max_scale, live), _F32(0))
    d16 = _fp16(np.where(live, _F32(1) / _safe(iscale, live), 0))
    sc = np.clip(_rint(iscale[:, None] * scales), -128, 127)

    dq = d16.astype(_F32)[:, None] * sc
    nz = dq != 0
    Lq = np.clip(_rint(x / _safe(dq, nz)[..., None]), -32, 31) + 32
    L = np.where(nz[..., None], Lq, L).reshape(nb, QK_K).astype(np.uint8)

    q = L.reshape(nb, 2, 4, 32)  # [half, k, l] = value 128*half + 32*k + l
    lo = q & 0xF
    ql = (lo[:, :, 0:2] | (lo[:, :, 2:4] << 4)).reshape(nb, 128)
    hi = q >> 4
    qh = (hi[:, :, 0] | (hi[:, :, 1] << 2) | (hi[:, :, 2] << 4) | (hi[:, :, 3] << 6)).reshape(nb, 64)
    out = np.concatenate([ql, qh, sc.astype(np.int8).view(np.uint8), _u8(d16[:, None])], axis=1)
    out[~live] = 0  # the reference memsets an all-zero super-block
    return out


_K_QUANTIZERS = {
    "Q2_K": _quantize_q2_k,
    "Q3_K": _quantize_q3_k,
    "Q4_K": _quantize_q4_k,
    "Q5_K": _quantize_q5_k,
    "Q6_K": _quantize_q6_k,
}
_GGUF_PY_TYPES = {"BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"}


def _as_float32(values) -> np.ndarray:
    if hasattr(values, "detach"):  # torch tensor (bf16/fp16 cannot go through numpy directly)
        values = values.detach().to("cpu").float().numpy()
    return np.ascontiguousarray(values, dtype=np.float32)


def quantize(values, qtype) -> np.ndarray:
    """Quantize ``values`` (float array or torch tensor, last dim = row) to ``qtype``.

    Returns uint8 bytes shaped ``[*values.shape[:-1], bytes_per_row]``. The row
    length must be a multiple of the type's block size (32, or 256 for K-quants).
    Raises ValueError naming the type when it is not supported or the row does not fit.
    """
    qtype = as_qtype(qtype)
    name = qtype.name
    arr = _as_float32(values)
    if arr.ndim == 0:
        raise ValueError(f"cannot quantize a scalar to {name}: give at least one row")
    if name not in supported_names():
        raise ValueError(f"cannot quantize to {name}: supported types are {', '.join(supported_names())}")
    cols = arr.shape[-1]
    bs = block_size(qtype)
    if cols % bs:
        raise ValueError(f"{name} packs rows in blocks of {bs} values; a row of {cols} values does not fit")

    if name == "F32":
        return arr.copy().view(np.uint8)
    if name == "F16":
        with np.errstate(over="ignore"):
            half = arr.astype(np.float16)
        overflow = np.isinf(half) & np.isfinite(arr)
        if overflow.any():
            big = np.abs(arr[overflow]).max()
            raise ValueError(f"cannot store as F16: values reach {big:.4g}, beyond float16's 65504; use F32 or BF16")
        return half.view(np.uint8)
    if name != "BF16" and not np.isfinite(arr).all():
        raise ValueError(f"cannot quantize to {name}: the values contain NaN or infinity")
    if name in _GGUF_PY_TYPES:
        return np.asarray(_gguf().quants.quantize(arr, qtype), dtype=np.uint8)

    fn = _K_QUANTIZERS[name]
    blocks = arr.reshape(-1, QK_K)
    out = np.empty((blocks.shape[0], row_bytes(qtype, QK_K)), dtype=np.uint8)
    for start in range(0, blocks.shape[0], _CHUNK_SUPERBLOCKS):
        out[start : start + _CHUNK_SUPERBLOCKS] = fn(blocks[start : start + _CHUNK_SUPERBLOCKS])
    return out.reshape(*arr.shape[:-1], row_bytes(qtype, cols))


def dequantize(data: np.ndarray, qtype) -> np.ndarray:
    """gguf-py's reference dequantizer (float32), for checks and error measurements."""
    return _gguf().quants.dequantize(np.asarray(data), as_qtype(qtype))


def roundtrip(values, qtype) -> np.ndarray:
    """``values`` after quantize -> dequantize (float32, same shape)."""
    arr = _as_float32(values)
    return dequantize(quantize(arr, qtype), qtype).reshape(arr.shape)


def quantization_rmse(qtype, n: int = 1 << 16, seed: int = 0) -> float:
    """RMSE of quantize -> dequantize on ``n`` standard-normal weights (rows of 256)."""
    if n % QK_K:
        raise ValueError(f"n must be a multiple of {QK_K}, got {n}")
    x = np.random.default_rng(seed).standard_normal(n, dtype=np.float32).reshape(-1, QK_K)
    err = roundtrip(x, qtype).astype(np.float64) - x
    return float(np.sqrt(np.mean(err * err)))


def rmse_table(n: int = 1 << 16, seed: int = 0) -> list[tuple[str, float, float]]:
    """(type, bits per weight, Gaussian RMSE) for every supported type."""
    return [(t, bits_per_weight(t), quantization_rmse(t, n, seed)) for t in supported_names()]


def _main() -> None:
    import time

    n = 1 << 18
    print(f"quantize -> dequantize RMSE on {n:,} N(0, 1) weights (seed 0)")
    print(f"{'type':<6} {'bits/w':>7} {'RMSE':>10} {'time':>8}")
    for t in supported_names():
        t0 = time.perf_counter()
        r = quantization_rmse(t, n, 0)
        print(f"{t:<6} {bits_per_weight(t):>7.4f} {r:>10.6f} {time.perf_counter() - t0:>7.2f}s")


if __name__ == "__main__":
    _main()
