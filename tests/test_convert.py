"""`python -m twostage_i2v convert`: a tiny Wan 2.1 I2V state dict -> GGUF, read back with gguf-py.

The state dict's names and shapes are those of ComfyUI's
comfy/ldm/wan/model.py WanModel(model_type="i2v", dim=128, ffn_dim=256,
num_layers=2, in_dim=36, out_dim=16, text_dim=4096, freq_dim=256), img_emb
input 1280, stored with ComfyUI's checkpoint prefix.
"""

from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from twostage_i2v import cli
from twostage_i2v.models import wan_recipes
from twostage_i2v.gguf.writer import LazyTensor
from twostage_i2v.models.wan_convert import write_model_gguf

pytestmark = pytest.mark.core

DIM, FFN, LAYERS, IN_DIM, OUT_DIM, TEXT_DIM, FREQ_DIM, IMG_DIM = 128, 256, 2, 36, 16, 4096, 256, 1280
PREFIX = "model.diffusion_model."
T = gguf.GGMLQuantizationType


def wan_i2v_shapes() -> dict[str, tuple]:
    s: dict[str, tuple] = {}

    def linear(name, out_f, in_f):
        s[f"{name}.weight"] = (out_f, in_f)
        s[f"{name}.bias"] = (out_f,)

    s["patch_embedding.weight"] = (DIM, IN_DIM, 1, 2, 2)
    s["patch_embedding.bias"] = (DIM,)
    linear("text_embedding.0", DIM, TEXT_DIM)
    linear("text_embedding.2", DIM, DIM)
    linear("time_embedding.0", DIM, FREQ_DIM)
    linear("time_embedding.2", DIM, DIM)
    linear("time_projection.1", 6 * DIM, DIM)
    for b in range(LAYERS):
        p = f"blocks.{b}."
        s[p + "modulation"] = (1, 6, DIM)
        for a in ("q", "k", "v", "o"):
            linear(p + "self_attn." + a, DIM, DIM)
        s[p + "self_attn.norm_q.weight"] = (DIM,)
        s[p + "self_attn.norm_k.weight"] = (DIM,)
        s[p + "norm3.weight"] = (DIM,)
        s[p + "norm3.bias"] = (DIM,)
        for a in ("q", "k", "v", "o", "k_img", "v_img"):
            linear(p + "cross_attn." + a, DIM, DIM)
        for a in ("norm_q", "norm_k", "norm_k_img"):
            s[p + f"cross_attn.{a}.weight"] = (DIM,)
        linear(p + "ffn.0", FFN, DIM)
        linear(p + "ffn.2", DIM, FFN)
    s["head.modulation"] = (1, 2, DIM)
    linear("head.head", OUT_DIM * 4, DIM)
    s["img_emb.proj.0.weight"] = (IMG_DIM,)
    s["img_emb.proj.0.bias"] = (IMG_DIM,)
    linear("img_emb.proj.1", IMG_DIM, IMG_DIM)
    linear("img_emb.proj.3", DIM, IMG_DIM)
    s["img_emb.proj.4.weight"] = (DIM,)
    s["img_emb.proj.4.bias"] = (DIM,)
    return s


def random_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=g) * 0.05 for k, shape in wan_i2v_shapes().items()}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    sd = random_state_dict()
    path = tmp_path_factory.mktemp("src") / "wan_tiny_i2v.safetensors"
    save_file({PREFIX + k: v for k, v in sd.items()}, str(path))
    return path, sd


def convert(src, dst, *extra) -> int:
    return cli.main(["convert", str(src), str(dst), *extra])


def read_back(path) -> tuple[gguf.GGUFReader, dict]:
    reader = gguf.GGUFReader(str(path))
    return reader, {t.name: t for t in reader.tensors}


def logical(reader, t) -> tuple:
    field = reader.get_field(f"comfy.gguf.orig_shape.{t.name}")
    if field is not None:
        return tuple(int(v) for v in field.contents())
    return tuple(int(s) for s in reversed(t.shape.tolist()))


def decode(reader, t) -> np.ndarray:
    return gguf.quants.dequantize(np.asarray(t.data), t.tensor_type).reshape(logical(reader, t))


@pytest.fixture(scope="module")
def converted(model, tmp_path_factory):
    """recipe -> path of the converted file (each recipe converted once)."""
    src, _ = model
    out = tmp_path_factory.mktemp("gguf")
    done = {}

    def get(recipe):
        if recipe not in done:
            dst = out / f"wan_tiny_{recipe}.gguf"
            assert convert(src, dst, "--type", recipe) == 0
            done[recipe] = dst
        return done[recipe]

    return get


# Expected types in the tiny model (dim 128: rows of 128 fit no K-quant, so
# those tensors take the documented fallbacks; ffn.2 rows are 256 wide and do fit).
ALWAYS_F32 = [
    "patch_embedding.weight",
    "patch_embedding.bias",
    "blocks.0.modulation",
    "head.modulation",
    "head.head.weight",
    "blocks.1.cross_attn.norm_k_img.weight",
    "blocks.0.norm3.bias",
    "text_embedding.0.weight",  # 524,288 values: under the 2**20 F16 threshold
    "time_projection.1.weight",
    "img_emb.proj.3.weight",
]
EXPECTED = {
    "Q4_K_M": {
        "blocks.0.ffn.2.weight": T.Q4_K,  # layer 0 of 2 is not a more-bits layer
        "blocks.1.ffn.2.weight": T.Q6_K,  # layer 1 is (1 >= 7 * 2 // 8)
        "blocks.0.self_attn.q.weight": T.Q5_0,  # Q4_K -> Q5_0 (row 128)
        "blocks.0.self_attn.v.weight": T.Q5_0,
        "blocks.1.self_attn.v.weight": T.Q8_0,  # Q6_K -> Q8_0
        "blocks.1.cross_attn.v_img.weight": T.Q8_0,
        "blocks.1.cross_attn.o.weight": T.Q5_1,  # Q5_K -> Q5_1
        "blocks.0.cross_attn.o.weight": T.Q5_0,
        "blocks.1.ffn.0.weight": T.Q5_0,
        "img_emb.proj.1.weight": T.F16,  # 1,638,400 values
    },
    "Q5_K_M": {
        "blocks.0.ffn.2.weight": T.Q5_K,
        "blocks.1.ffn.2.weight": T.Q6_K,
        "blocks.1.self_attn.o.weight": T.Q8_0,  # Q6_K -> Q8_0
        "blocks.0.self_attn.o.weight": T.Q5_1,  # Q5_K -> Q5_1
        "img_emb.proj.1.weight": T.F16,
    },
    "Q4_K_S": {  # n // 8 == 0: no layer gets the Q5_K bump
        "blocks.0.ffn.2.weight": T.Q4_K,
        "blocks.1.ffn.2.weight": T.Q4_K,
        "blocks.0.self_attn.v.weight": T.Q5_0,
    },
    "Q3_K_S": {
        "blocks.0.ffn.2.weight": T.Q3_K,
        "blocks.1.ffn.2.weight": T.Q3_K,
        "blocks.1.self_attn.v.weight": T.Q4_0,  # Q3_K -> Q4_0
    },
    "Q6_K": {"blocks.1.ffn.2.weight": T.Q6_K, "blocks.0.cross_attn.k.weight": T.Q8_0},
    "Q8_0": {"blocks.0.ffn.2.weight": T.Q8_0, "blocks.1.cross_attn.k_img.weight": T.Q8_0, "img_emb.proj.1.weight": T.F16},
    "Q2_K": {"blocks.1.ffn.2.weight": T.Q2_K, "blocks.1.self_attn.v.weight": T.Q4_0},
    "Q5_1": {"blocks.1.ffn.2.weight": T.Q5_1, "blocks.0.self_attn.q.weight": T.Q5_1},
    "F16": {"blocks.0.ffn.0.weight": T.F16, "img_emb.proj.1.weight": T.F16},
    "BF16": {"blocks.0.ffn.0.weight": T.BF16, "img_emb.proj.1.weight": T.BF16},
}


@pytest.mark.parametrize("recipe", sorted(EXPECTED))
def test_recipe_types_in_file(converted, recipe):
    reader, tensors = read_back(converted(recipe))
    assert set(tensors) == set(wan_i2v_shapes())  # prefix stripped, nothing lost
    got = {n: t.tensor_type for n, t in tensors.items()}
    for name in ALWAYS_F32:
        assert got[name] == T.F32, name
    for name, shape in wan_i2v_shapes().items():
        if len(shape) == 1:
            assert got[name] == T.F32, name
    for name, want in EXPECTED[recipe].items():
        assert got[name] == want, (name, got[name].name, want.name)
    assert reader.get_field("general.architecture").contents() == "wan"
    assert reader.get_field("general.file_type").contents() == wan_recipes.file_type(recipe)


def test_f32_round_trips_exactly_and_restores_5d_shape(model, converted):
    _, sd = model
    reader, tensors = read_back(converted("F32"))
    assert {t.tensor_type for t in tensors.values()} == {T.F32}
    field = reader.get_field("comfy.gguf.orig_shape.patch_embedding.weight")
    assert [gguf.GGUFValueType(t) for t in field.types] == [gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.INT32]
    assert tuple(field.contents()) == (DIM, IN_DIM, 1, 2, 2)
    pe = tensors["patch_embedding.weight"]
    assert len(pe.shape) <= 4 and int(np.prod(pe.shape)) == DIM * IN_DIM * 4
    # Only the tensor that had to be reshaped carries orig_shape metadata.
    assert [k for k in reader.fields if k.startswith("comfy.gguf.orig_shape.")] == [
        "comfy.gguf.orig_shape.patch_embedding.weight"
    ]
    for name, value in sd.items():
        np.testing.assert_array_equal(decode(reader, tensors[name]), value.numpy(), err_msg=name)


def test_q8_0_within_quantization_error(model, converted):
    _, sd = model
    reader, tensors = read_back(converted("Q8_0"))
    n_q8 = 0
    for name, value in sd.items():
        x = value.numpy()
        got = decode(reader, tensors[name])
        kind = tensors[name].tensor_type
        if kind == T.Q8_0:
            n_q8 += 1
            # Q8_0: per 32-value block d = amax / 127 and |error| <= d / 2, plus
            # |q| <= 127 times d's fp16 rounding (relative 2**-11).
            d = np.abs(x.reshape(-1, 32)).max(axis=1, keepdims=True) / 127
            err = np.abs(got - x).reshape(-1, 32)
            assert np.all(err <= d * (0.5 + 127 * 2.0**-11) * 1.001), name
            assert np.sqrt(np.mean((got - x) ** 2)) < 0.01 * np.sqrt(np.mean(x * x)), name
        elif kind == T.F16:
            np.testing.assert_array_equal(got, x.astype(np.float16).astype(np.float32), err_msg=name)
        else:
            assert kind == T.F32, name
            np.testing.assert_array_equal(got, x, err_msg=name)
    assert n_q8 == 2 * (10 + 2)  # q, k, v, o x 2 attentions, k_img, v_img, ffn.0, ffn.2 per block


def test_k_quant_recipe_error_matches_its_bits(model, converted):
    _, sd = model
    reader, tensors = read_back(converted("Q4_K_M"))
    bound = {T.Q4_K: 0.11, T.Q6_K: 0.028, T.Q5_0: 0.055, T.Q5_1: 0.055, T.Q8_0: 0.007}  # rmse / rms, from 2**bits
    for name, t in tensors.items():
        if t.tensor_type in bound:
            x = sd[name].numpy()
            rel = np.sqrt(np.mean((decode(reader, t) - x) ** 2)) / np.sqrt(np.mean(x * x))
            assert rel < bound[t.tensor_type], (name, t.tensor_type.name, rel)


def test_bf16_source(tmp_path):
    sd = {k: v.to(torch.bfloat16) for k, v in random_state_dict(1).items()}
    src = tmp_path / "bf16.safetensors"
    save_file(sd, str(src))
    dst = tmp_path / "out.gguf"
    assert convert(src, dst, "--type", "F32") == 0
    reader, tensors = read_back(dst)
    for name, value in sd.items():
        np.testing.assert_array_equal(decode(reader, tensors[name]), value.float().numpy(), err_msg=name)


def test_existing_output_needs_force(model, tmp_path, capsys):
    src, _ = model
    dst = tmp_path / "taken.gguf"
    dst.write_bytes(b"keep me")
    assert convert(src, dst, "--type", "Q8_0") == 1
    err = capsys.readouterr().err
    assert str(dst) in err and "--force" in err
    assert dst.read_bytes() == b"keep me"

    assert convert(src, dst, "--type", "Q8_0", "--force") == 0
    _, tensors = read_back(dst)
    assert tensors["blocks.0.ffn.0.weight"].tensor_type == T.Q8_0
    assert not [p for p in tmp_path.iterdir() if p.name != dst.name]  # no temp file left


def test_unknown_type_lists_valid_ones(model, tmp_path, capsys):
    src, _ = model
    dst = tmp_path / "x.gguf"
    assert convert(src, dst, "--type", "Q4_K_X") == 1
    err = capsys.readouterr().err
    assert "Q4_K_X" in err
    for name in wan_recipes.RECIPE_NAMES:
        assert name in err
    assert not dst.exists()


def test_missing_input(tmp_path, capsys):
    missing = tmp_path / "nope.safetensors"
    assert convert(missing, tmp_path / "x.gguf") == 1
    assert str(missing) in capsys.readouterr().err


def test_summary_reports_histogram_size_and_bpw(model, tmp_path, capsys):
    src, _ = model
    dst = tmp_path / "s.gguf"
    assert convert(src, dst, "--type", "Q4_K_M") == 0
    out = capsys.readouterr().out
    _, tensors = read_back(dst)
    counts = {}
    for t in tensors.values():
        counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + 1
    for name, n in counts.items():
        assert any(line.split()[:2] == [name, str(n)] for line in out.splitlines()), (name, n, out)
    assert f"{dst.stat().st_size:,} bytes" in out
    n_values = sum(int(np.prod(t.shape)) for t in tensors.values())
    data_bytes = sum(int(t.n_bytes) for t in tensors.values())
    assert f"{8 * data_bytes / n_values:.3f} bits per weight" in out


def test_failed_write_leaves_no_file(tmp_path):
    def boom():
        raise RuntimeError("disk on fire")

    tensors = {k: torch.zeros(s) for k, s in wan_i2v_shapes().items()}
    tensors["blocks.1.ffn.2.weight"] = LazyTensor((DIM, FFN), boom)
    dst = tmp_path / "partial.gguf"
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_model_gguf(dst, tensors, "Q4_K_M")
    assert list(tmp_path.iterdir()) == []


def test_write_gguf_refuses_overwrite_and_unknown_arch(tmp_path):
    dst = tmp_path / "a.gguf"
    dst.write_bytes(b"x")
    with pytest.raises(FileExistsError, match=r"a\.gguf.*--force"):
        write_model_gguf(dst, {"w": np.zeros((4, 32), np.float32)}, "Q8_0")
    other = {"double_blocks.0.img_attn.proj.weight": np.ones((4, 32), np.float32)}
    with pytest.raises(ValueError, match="arch"):
        write_model_gguf(tmp_path / "b.gguf", other, "Q8_0")
    write_model_gguf(tmp_path / "b.gguf", other, "Q8_0", arch="flux", metadata={"general.name": "t", "my.int": 3})
    reader, tensors = read_back(tmp_path / "b.gguf")
    assert reader.get_field("general.architecture").contents() == "flux"
    assert reader.get_field("my.int").contents() == 3
    assert tensors["double_blocks.0.img_attn.proj.weight"].tensor_type == T.Q8_0


# The recipe table on the real 14B shapes (dim 5120, ffn 13824, 40 layers).
def test_recipes_on_wan_14b_shapes():
    d, f, n = 5120, 13824, 40

    def tt(recipe, name, shape):
        return wan_recipes.tensor_type(recipe, name, shape, n_layers=n)

    more_bits = [i for i in range(n) if tt("Q4_K_M", f"blocks.{i}.self_attn.v.weight", (d, d)) == T.Q6_K]
    assert more_bits == [0, 1, 2, 3, 4, 7, 10, 13, 16, 19, 22, 25, 28, 31, 34, 35, 36, 37, 38, 39]
    for i in range(n):
        bump = i in more_bits
        assert tt("Q4_K_M", f"blocks.{i}.ffn.2.weight", (d, f)) == (T.Q6_K if bump else T.Q4_K)
        assert tt("Q4_K_M", f"blocks.{i}.cross_attn.v_img.weight", (d, d)) == (T.Q6_K if bump else T.Q4_K)
        assert tt("Q4_K_M", f"blocks.{i}.cross_attn.o.weight", (d, d)) == (T.Q5_K if bump else T.Q4_K)
        assert tt("Q5_K_M", f"blocks.{i}.self_attn.o.weight", (d, d)) == (T.Q6_K if bump else T.Q5_K)
        assert tt("Q4_K_M", f"blocks.{i}.self_attn.q.weight", (d, d)) == T.Q4_K
        assert tt("Q4_K_M", f"blocks.{i}.ffn.0.weight", (f, d)) == T.Q4_K
        assert tt("Q4_K_S", f"blocks.{i}.self_attn.v.weight", (d, d)) == (T.Q5_K if i < 5 else T.Q4_K)
        assert tt("Q3_K_S", f"blocks.{i}.ffn.2.weight", (d, f)) == T.Q3_K
    for recipe in ("Q3_K_S", "Q4_K_M", "Q8_0", "F16"):
        assert tt(recipe, "time_projection.1.weight", (6 * d, d)) == T.F16
        assert tt(recipe, "text_embedding.0.weight", (d, 4096)) == T.F16
        assert tt(recipe, "head.head.weight", (64, d)) == T.F32
        assert tt(recipe, "blocks.3.modulation", (1, 6, d)) == T.F32
        assert tt(recipe, "patch_embedding.weight", (d, 36 * 4)) == T.F32
    assert tt("BF16", "time_projection.1.weight", (6 * d, d)) == T.BF16
    assert tt("F32", "blocks.0.ffn.0.weight", (f, d)) == T.F32
    # The prefix is ignored; widths that fit no block fall back as documented.
    assert tt("Q4_K_M", PREFIX + "blocks.9.self_attn.q.weight", (d, d)) == T.Q4_K
    assert tt("Q6_K", "blocks.0.ffn.0.weight", (f, 96)) == T.Q8_0
    assert tt("Q8_0", "blocks.0.ffn.0.weight", (f, 100)) == T.F16
    with pytest.raises(ValueError, match="Q7_K.*Q4_K_M"):
        wan_recipes.get_recipe("Q7_K")
