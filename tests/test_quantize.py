"""quantize(): every type against gguf-py's reference dequantizer.

Oracles: bytes from ``twostage_i2v.gguf.quantize`` are decoded by ``gguf.quants.dequantize``
(the llama.cpp team's numpy port), and the error must meet llama.cpp's own
limits from tests/test-quantize-fns.cpp on that test's synthetic data; the
K-quant bytes must also equal those of a scalar, line-by-line transliteration
of llama.cpp's C reference quantizers (bottom of this file).
"""

from __future__ import annotations

import math

import gguf
import numpy as np
import pytest

from twostage_i2v.gguf import quantize as q

pytestmark = pytest.mark.core

ALL_TYPES = q.supported_names()
K_TYPES = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
BLOCK_TYPES = [t for t in ALL_TYPES if t not in ("F32", "F16", "BF16")]

# llama.cpp tests/test-quantize-fns.cpp: MAX_QUANTIZATION_TOTAL_ERROR (0.002) for
# every type, _2BITS (0.0075) for Q2_K, _3BITS (0.0040) for Q3_K; MAX_DOT_PRODUCT_ERROR
# (0.02), _LOWBIT (0.04) for Q2_K. Data: test_size = 32 * 128 values,
# generate_data(offset) = 0.1 + 2 * cos(i + offset).
TEST_SIZE = 32 * 128
TOTAL_ERROR = {"Q2_K": 0.0075, "Q3_K": 0.0040}
DEFAULT_TOTAL_ERROR = 0.002
DOT_ERROR = {"Q2_K": 0.04}
DEFAULT_DOT_ERROR = 0.02

# Levels per value of each block type (the bits that carry the value, not the
# per-block scales): the basis of the Gaussian RMSE bound below.
VALUE_BITS = {"Q2_K": 2, "Q3_K": 3, "Q4_0": 4, "Q4_1": 4, "Q4_K": 4, "Q5_0": 5, "Q5_1": 5, "Q5_K": 5, "Q6_K": 6, "Q8_0": 8}
MANTISSA_BITS = {"F16": 10, "BF16": 7}


def generate_data(offset: float, n: int = TEST_SIZE, amplitude: float = 2.0) -> np.ndarray:
    i = np.arange(n, dtype=np.float32)
    return (np.float32(0.1) + np.float32(amplitude) * np.cos(i + np.float32(offset))).astype(np.float32)


def array_rmse(a: np.ndarray, b: np.ndarray) -> float:
    """test-quantize-fns.cpp's array_rmse: sqrt(sum of squares) / n (not a mean)."""
    d = a.astype(np.float64) - b.astype(np.float64)
    return math.sqrt(float(np.sum(d * d))) / a.size


def gguf_roundtrip(x: np.ndarray, qtype: str) -> np.ndarray:
    raw = q.quantize(x, qtype)
    return gguf.quants.dequantize(raw, gguf.GGMLQuantizationType[qtype]).reshape(x.shape)


@pytest.mark.parametrize("qtype", ALL_TYPES)
def test_llama_cpp_total_error_limit(qtype):
    x = generate_data(0.0)
    err = array_rmse(x, gguf_roundtrip(x, qtype))
    limit = TOTAL_ERROR.get(qtype, DEFAULT_TOTAL_ERROR)
    print(f"{qtype}: total quantization error {err:.6f} (llama.cpp limit {limit})")
    assert err < limit


@pytest.mark.parametrize("qtype", BLOCK_TYPES)
def test_llama_cpp_dot_product_error_limit(qtype):
    # The C test also quantizes the second vector (to the type's vec_dot type);
    # here it stays float32, so only the error of our quantization is measured.
    x, y = generate_data(0.0), generate_data(1.0)
    err = abs(float(np.dot(gguf_roundtrip(x, qtype).astype(np.float64), y)) - float(np.dot(x.astype(np.float64), y))) / x.size
    assert err < DOT_ERROR.get(qtype, DEFAULT_DOT_ERROR)


def gaussian_bound(qtype: str) -> float:
    """RMSE bound for N(0, 1) weights implied by the bits a type spends per value.

    Block types: a uniform quantizer with 2**bits levels spread over +-3 sigma
    (99.7 % of the mass) has step 6 / 2**bits and RMSE step / sqrt(12); every
    type, with its per-block scales, must do at least that well. Float types:
    rounding to m mantissa bits keeps the relative error under 2**-(m+1).
    """
    if qtype == "F32":
        return 0.0
    if qtype in MANTISSA_BITS:
        return 2.0 ** -(MANTISSA_BITS[qtype] + 1)
    return 6.0 / 2 ** VALUE_BITS[qtype] / math.sqrt(12)


@pytest.fixture(scope="module")
def gaussian_rmse():
    table = {t: q.quantization_rmse(t, n=1 << 16, seed=0) for t in ALL_TYPES}
    print("\nGaussian N(0,1) RMSE, 65,536 weights, seed 0")
    for t, r in table.items():
        print(f"  {t:<5} {q.bits_per_weight(t):7.4f} bits/w  rmse {r:.6f}  bound {gaussian_bound(t):.6f}")
    return table


@pytest.mark.parametrize("qtype", ALL_TYPES)
def test_gaussian_rmse_within_bits_bound(gaussian_rmse, qtype):
    if qtype == "F32":
        assert gaussian_rmse[qtype] == 0.0
    else:
        assert 0.0 < gaussian_rmse[qtype] < gaussian_bound(qtype)


def test_gaussian_rmse_orders_by_bits(gaussian_rmse):
    r = gaussian_rmse
    assert r["Q8_0"] < r["Q6_K"] < r["Q5_K"] < r["Q4_K"] < r["Q3_K"] < r["Q2_K"]
    # Each K-quant beats the legacy type with the same value bits (its point).
    assert r["Q4_K"] < r["Q4_1"] < r["Q4_0"]
    assert r["Q5_K"] < r["Q5_1"] < r["Q5_0"]
    assert r["F16"] < r["BF16"] < r["Q8_0"]


@pytest.mark.parametrize("qtype", BLOCK_TYPES + ["F16", "BF16", "F32"])
@pytest.mark.parametrize("shape", [(3, 256), (7, 512), (13, 768), (256,), (2, 3, 1280)])
def test_any_row_count_and_rank(qtype, shape):
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape, dtype=np.float32)
    raw = q.quantize(x, qtype)
    values, nbytes = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[qtype]]
    assert raw.dtype == np.uint8
    assert raw.shape == (*shape[:-1], shape[-1] // values * nbytes)
    # Rows are independent: each row quantized alone gives the same bytes.
    rows = x.reshape(-1, shape[-1])
    alone = np.stack([q.quantize(r[None], qtype)[0] for r in rows])
    np.testing.assert_array_equal(raw.reshape(alone.shape), alone)
    deq = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType[qtype]).reshape(shape)
    assert np.sqrt(np.mean((deq - x) ** 2)) < max(gaussian_bound(qtype), 1e-12) * 1.5


def test_torch_input_in_bf16_is_accepted():
    import torch

    t = torch.randn(4, 256, generator=torch.Generator().manual_seed(3)).to(torch.bfloat16)
    np.testing.assert_array_equal(q.quantize(t, "Q4_K"), q.quantize(t.float().numpy(), "Q4_K"))


@pytest.mark.parametrize("qtype", K_TYPES)
def test_k_quant_edge_blocks(qtype):
    rng = np.random.default_rng(7)
    zeros = np.zeros((2, 256), np.float32)
    np.testing.assert_array_equal(gguf_roundtrip(zeros, qtype), zeros)

    # All-positive, all-negative, sparse and tiny-scale blocks keep the Gaussian
    # accuracy relative to their own spread.
    g = rng.standard_normal((8, 256), dtype=np.float32)
    cases = {
        "positive": np.abs(g),
        "negative": -np.abs(g),
        "sparse": np.where(rng.random(g.shape) < 0.7, 0, g).astype(np.float32),
        "tiny": g * np.float32(1e-3),
    }
    for label, x in cases.items():
        rel = np.sqrt(np.mean((gguf_roundtrip(x, qtype) - x) ** 2)) / np.sqrt(np.mean(x * x))
        assert rel < gaussian_bound(qtype) * 1.5, (label, rel)

    const = np.full((1, 256), 0.37, np.float32)
    np.testing.assert_allclose(gguf_roundtrip(const, qtype), const, rtol=0.02)


@pytest.mark.parametrize("qtype", K_TYPES)
def test_k_quant_is_scale_equivariant(qtype):
    # Scaling the input by a power of two scales every intermediate exactly, so
    # the reference algorithm picks the same levels: a check that nothing in the
    # port depends on absolute magnitudes.
    x = np.random.default_rng(11).standard_normal((4, 512), dtype=np.float32)
    np.testing.assert_array_equal(gguf_roundtrip(x * np.float32(8), qtype), gguf_roundtrip(x, qtype) * np.float32(8))


def test_errors_name_the_type():
    x = np.zeros((2, 256), np.float32)
    with pytest.raises(ValueError, match="IQ2_XXS"):
        q.quantize(x, "IQ2_XXS")
    with pytest.raises(ValueError, match="Q9_9"):
        q.quantize(x, "Q9_9")
    with pytest.raises(ValueError, match=r"Q4_K.*256.*100"):
        q.quantize(np.zeros((2, 100), np.float32), "Q4_K")
    with pytest.raises(ValueError, match=r"Q8_0.*32.*100"):
        q.quantize(np.zeros((2, 100), np.float32), "Q8_0")
    with pytest.raises(ValueError, match="NaN"):
        q.quantize(np.full((1, 256), np.nan, np.float32), "Q6_K")
    with pytest.raises(ValueError, match="65504"):
        q.quantize(np.full((1, 32), 1e6, np.float32), "F16")


def test_group_sums_accumulate_left_to_right():
    # The K-quant port matches llama.cpp's C loops only if each group's sums are
    # accumulated in order in float32, as those loops do.
    rng = np.random.default_rng(5)
    a = (rng.standard_normal((32, 4096)) * 10.0 ** rng.integers(-4, 5, (32, 4096))).astype(np.float32)
    expected = a[0].copy()
    for row in a[1:]:
        expected = (expected + row).astype(np.float32)
    np.testing.assert_array_equal(q._sum(a), expected)


# --------------------------------------------------------------------------------------
# A scalar transliteration of llama.cpp's reference K-quantizers (ggml/src/ggml-quants.c:
# quantize_row_q{2,3,4,5,6}_K_ref and make_qkx2_quants / make_q3_quants / make_qx_quants),
# one value at a time in float32 as the C code runs. Slow, but line-by-line auditable
# against the C source: the vectorised port must reproduce its bytes exactly.

f32 = np.float32


def _ni(v) -> int:  # nearest_int: round half to even
    return int(np.rint(f32(v)))


def _h(v) -> np.float16:
    return np.float16(f32(v))


def _ref_make_qx_quants(n, nmax, x):
    amax, mx = f32(0), f32(0)
    for v in x:
        if abs(v) > amax:
            amax, mx = abs(v), v
    if amax < 1e-15:
        return f32(0), [0] * n
    L = [0] * n

    def sums(iscale):
        slx, sl2, ls = f32(0), f32(0), []
        for v in x:
            l = max(-nmax, min(nmax - 1, _ni(iscale * v)))
            w = v * v
            slx, sl2 = f32(slx + w * v * l), f32(sl2 + w * l * l)
            ls.append(l)
        return slx, sl2, ls

    sumlx, suml2, ls = sums(f32(-nmax) / mx)
    L = [l + nmax for l in ls]
    scale = sumlx / suml2 if suml2 else f32(0)
    best = scale * sumlx
    for step in range(-9, 10):
        if step == 0:
            continue
        sumlx, suml2, ls = sums(-(nmax + f32(0.1) * step) / mx)
        if suml2 > 0 and sumlx * sumlx > best * suml2:
            L = [l + nmax for l in ls]
            scale = sumlx / suml2
            best = scale * sumlx
    return f32(scale), L


def _ref_make_q3_quants(n, nmax, x):
    amax, mx = f32(0), f32(0)
    for v in x:
        if abs(v) > amax:
            amax, mx = abs(v), v
    if amax < 1e-15:
        return f32(0), [0] * n
    iscale = f32(-nmax) / mx
    L, sumlx, suml2 = [], f32(0), f32(0)
    for v in x:
        l = max(-nmax, min(nmax - 1, _ni(iscale * v)))
        L.append(l)
        w = v * v
        sumlx, suml2 = f32(sumlx + w * v * l), f32(suml2 + w * l * l)
    for _ in range(5):
        changed = 0
        for i, v in enumerate(x):
            w = v * v
            slx = sumlx - w * v * L[i]
            if slx > 0:
                sl2 = suml2 - w * L[i] * L[i]
                new_l = max(-nmax, min(nmax - 1, _ni(v * sl2 / slx)))
                if new_l != L[i]:
                    slx = slx + w * v * new_l
                    sl2 = sl2 + w * new_l * new_l
                    if sl2 > 0 and slx * slx * suml2 > sumlx * sumlx * sl2:
                        L[i], sumlx, suml2 = new_l, slx, sl2
                        changed += 1
        if not changed:
            break
    return (sumlx / suml2 if suml2 > 0 else f32(0)), [l + nmax for l in L]


def _ref_make_qkx2_quants(n, nmax, x, weights, rmin, rdelta, nstep, use_mad):
    mn, mx = x[0], x[0]
    sum_w = weights[0]
    sum_x = sum_w * x[0]
    for v, w in zip(x[1:], weights[1:]):
        mn, mx = min(mn, v), max(mx, v)
        sum_w, sum_x = f32(sum_w + w), f32(sum_x + w * v)
    if mn > 0:
        mn = f32(0)
    if mx == mn:
        return f32(0), -mn, [0] * n

    def err(d):
        return abs(d) if use_mad else d * d

    iscale = nmax / (mx - mn)
    scale = 1 / iscale
    L = [max(0, min(nmax, _ni(iscale * (v - mn)))) for v in x]
    best = f32(0)
    for v, w, l in zip(x, weights, L):
        best = f32(best + w * err(scale * l + mn - v))
    for step in range(nstep + 1):
        iscale = (f32(rmin) + f32(rdelta) * step + nmax) / (mx - mn)
        Laux = [max(0, min(nmax, _ni(iscale * (v - mn)))) for v in x]
        sum_l, sum_l2, sum_xl = f32(0), f32(0), f32(0)
        for v, w, l in zip(x, weights, Laux):
            sum_l, sum_l2, sum_xl = f32(sum_l + w * l), f32(sum_l2 + w * l * l), f32(sum_xl + w * l * v)
        D = sum_w * sum_l2 - sum_l * sum_l
        if D > 0:
            this_scale = (sum_w * sum_xl - sum_x * sum_l) / D
            this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D
            if this_min > 0:
                this_min, this_scale = f32(0), sum_xl / sum_l2
            cur = f32(0)
            for v, w, l in zip(x, weights, Laux):
                cur = f32(cur + w * err(this_scale * l + this_min - v))
            if cur < best:
                L, best, scale, mn = Laux, cur, this_scale, this_min
    return f32(scale), f32(-mn), L


def _ref_pack2(L):
    return [L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6) for j in (0, 128) for l in range(32)]


def _f16_bytes(v) -> bytes:
    return _h(v).tobytes()


def _ref_q2_k(x):
    scales, mins, L = [], [], []
    for j in range(16):
        g = x[16 * j : 16 * j + 16]
        s, m, l = _ref_make_qkx2_quants(16, 3, g, [abs(v) for v in g], -0.5, 0.1, 15, True)
        scales.append(s), mins.append(m), L.extend(l)
    max_scale, max_min = max([f32(0)] + scales), max([f32(0)] + mins)
    sc = [0] * 16
    d = _h(max_scale / f32(15)) if max_scale > 0 else _h(0)
    if max_scale > 0:
        sc = [_ni(f32(15) / max_scale * s) for s in scales]
    dmin = _h(max_min / f32(15)) if max_min > 0 else _h(0)
    if max_min > 0:
        sc = [c | (_ni(f32(15) / max_min * m) << 4) for c, m in zip(sc, mins)]
    for j in range(16):
        dj = f32(d) * (sc[j] & 0xF)
        if not dj:
            continue
        dm = f32(dmin) * (sc[j] >> 4)
        for i in range(16):
            L[16 * j + i] = max(0, min(3, _ni((x[16 * j + i] + dm) / dj)))
    return bytes(sc) + bytes(_ref_pack2(L)) + _f16_bytes(d) + _f16_bytes(dmin)


def _ref_q3_k(x):
    scales, L = [], []
    amax, max_scale = f32(0), f32(0)
    for j in range(16):
        s, l = _ref_make_q3_quants(16, 4, x[16 * j : 16 * j + 16])
        scales.append(s), L.extend(l)
        if abs(s) > amax:
            amax, max_scale = abs(s), s
    sb = [0] * 12
    d = _h(0)
    if max_scale:
        iscale = f32(-32) / max_scale
        for j, s in enumerate(scales):
            l = max(-32, min(31, _ni(iscale * s))) + 32
            if j < 8:
                sb[j] = l & 0xF
            else:
                sb[j - 8] |= (l & 0xF) << 4
            sb[8 + j % 4] |= (l >> 4) << (2 * (j // 4))
        d = _h(1 / iscale)
    for j in range(16):
        c = (sb[j] & 0xF) if j < 8 else (sb[j - 8] >> 4)
        c = (c | (((sb[8 + j % 4] >> (2 * (j // 4))) & 3) << 4)) - 32
        dj = f32(d) * c
        if not dj:
            continue
        for i in range(16):
            L[16 * j + i] = max(-4, min(3, _ni(x[16 * j + i] / dj))) + 4
    hmask = [0] * 32
    for j in range(256):
        if L[j] > 3:
            hmask[j % 32] |= 1 << (j // 32)
            L[j] -= 4
    return bytes(hmask) + bytes(_ref_pack2(L)) + bytes(sb) + _f16_bytes(d)


def _ref_q45_k(x, nmax, rmin, rdelta, nstep):
    scales, mins, L = [], [], []
    for j in range(8):
        g = x[32 * j : 32 * j + 32]
        sum_x2 = f32(0)
        for v in g:
            sum_x2 = f32(sum_x2 + v * v)
        av_x = np.sqrt(sum_x2 / f32(32))
        s, m, l = _ref_make_qkx2_quants(32, nmax, g, [av_x + abs(v) for v in g], rmin, rdelta, nstep, False)
        scales.append(s), mins.append(m), L.extend(l)
    max_scale, max_min = max([f32(0)] + scales), max([f32(0)] + mins)
    inv_s = f32(63) / max_scale if max_scale > 0 else f32(0)
    inv_m = f32(63) / max_min if max_min > 0 else f32(0)
    sb = [0] * 12
    lss, lms = [], []
    for j in range(8):
        ls, lm = min(63, _ni(inv_s * scales[j])), min(63, _ni(inv_m * mins[j]))
        lss.append(ls), lms.append(lm)
        if j < 4:
            sb[j], sb[j + 4] = ls, lm
        else:
            sb[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4)
            sb[j - 4] |= (ls >> 4) << 6
            sb[j] |= (lm >> 4) << 6
    d, dmin = _h(max_scale / f32(63)), _h(max_min / f32(63))
    for j in range(8):
        dj = f32(d) * lss[j]
        if not dj:
            continue
        dm = f32(dmin) * lms[j]
        for i in range(32):
            L[32 * j + i] = max(0, min(nmax, _ni((x[32 * j + i] + dm) / dj)))
    return _f16_bytes(d) + _f16_bytes(dmin) + bytes(sb), L


def _ref_q4_k(x):
    head, L = _ref_q45_k(x, 15, -1.0, 0.1, 20)
    return head + bytes(L[j + l] | (L[j + l + 32] << 4) for j in range(0, 256, 64) for l in range(32))


def _ref_q5_k(x):
    head, L = _ref_q45_k(x, 31, -0.5, 0.1, 15)
    qh, ql = [0] * 32, []
    for k, n in enumerate(range(0, 256, 64)):
        for j in range(32):
            l1, l2 = L[n + j], L[n + j + 32]
            if l1 > 15:
                l1 -= 16
                qh[j] |= 1 << (2 * k)
            if l2 > 15:
                l2 -= 16
                qh[j] |= 2 << (2 * k)
            ql.append(l1 | (l2 << 4))
    return head + bytes(qh) + bytes(ql)


def _ref_q6_k(x):
    scales, L = [], []
    amax, max_scale = f32(0), f32(0)
    for j in range(16):
        s, l = _ref_make_qx_quants(16, 32, x[16 * j : 16 * j + 16])
        scales.append(s), L.extend(l)
        if abs(s) > amax:
            amax, max_scale = abs(s), s
    if amax < 1e-15:
        return bytes(210)
    iscale = f32(-128) / max_scale
    d = _h(1 / iscale)
    sc = [min(127, _ni(iscale * s)) for s in scales]
    for j in range(16):
        dj = f32(d) * sc[j]
        if not dj:
            continue
        for i in range(16):
            L[16 * j + i] = max(-32, min(31, _ni(x[16 * j + i] / dj))) + 32
    ql, qh = [0] * 128, [0] * 64
    for h, j in enumerate((0, 128)):
        for l in range(32):
            q = [L[j + l + 32 * k] for k in range(4)]
            ql[64 * h + l] = (q[0] & 0xF) | ((q[2] & 0xF) << 4)
            ql[64 * h + l + 32] = (q[1] & 0xF) | ((q[3] & 0xF) << 4)
            qh[32 * h + l] = (q[0] >> 4) | ((q[1] >> 4) << 2) | ((q[2] >> 4) << 4) | ((q[3] >> 4) << 6)
    return bytes(ql) + bytes(qh) + np.array(sc, np.int8).tobytes() + _f16_bytes(d)


_REFERENCE = {"Q2_K": _ref_q2_k, "Q3_K": _ref_q3_k, "Q4_K": _ref_q4_k, "Q5_K": _ref_q5_k, "Q6_K": _ref_q6_k}


@pytest.mark.parametrize("qtype", K_TYPES)
def test_k_quants_match_scalar_reference_bytes(qtype):
    rng = np.random.default_rng(2024)
    data = np.concatenate(
        [
            generate_data(0.0)[:1024],  # llama.cpp's test data
            rng.standard_normal(512, dtype=np.float32),
            rng.standard_t(2, 256).astype(np.float32),  # heavy tails
            np.abs(rng.standard_normal(256, dtype=np.float32)),  # no negative values
            np.where(rng.random(256) < 0.6, 0, rng.standard_normal(256)).astype(np.float32),
            np.zeros(256, np.float32),
        ]
    ).reshape(-1, 256)
    got = q.quantize(data, qtype)
    for i, block in enumerate(data):
        want = np.frombuffer(_REFERENCE[qtype]([f32(v) for v in block]), np.uint8)
        np.testing.assert_array_equal(got[i], want, err_msg=f"{qtype} super-block {i}")
