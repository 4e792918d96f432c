"""Wan 2.2 files: what `inspect` and the loader call them, and 'Load Wan I2V Model (GGUF)' on both
A14B experts and the TI2V 5B against ComfyUI's own UNETLoader on the same weights.

Files come two ways: the package's converter, and gguf-py's GGUFWriter used the way ComfyUI-GGUF's
tools/convert.py writes Wan (arch ``wan``, F16 matrices, F32 vectors and modulation, the 5-D patch
embedding added back as F32, stored with fewer dims and its real shape in
``comfy.gguf.orig_shape.<name>``, or stored 5-D as its fix_5d_tensors tool does). Oracles: core
UNETLoader on gguf-py's dequantization of each file, ComfyUI's model detection (model class and latent
format), the tensors as ComfyUI's own classes build them.
"""

from __future__ import annotations

import json

import gguf
import numpy as np
import pytest
import torch

from test_wan_loader import reference_state_dict, rel_max_err
from twostage_i2v.cli import main
from twostage_i2v.models.kind import EXPERT_KEY, classify, expert_from, version_from_text
from twostage_i2v.models.wan_convert import write_model_gguf

LOADER = "TwoStageI2V_WanI2VLoaderGGUF"
EXPERT_FILES = {"high_noise": "wan2.2_i2v_high_noise_tiny", "low_noise": "Wan2.2-I2V-A14B-LowNoise-tiny"}


# ---------------------------------------------------------------- names (no ComfyUI)


@pytest.mark.core
@pytest.mark.parametrize("name,expert", [
    ("wan2.2_i2v_high_noise_14B_Q4_K_M.gguf", "high_noise"),
    ("wan2.2_i2v_low_noise_14B_Q4_K_M.gguf", "low_noise"),
    ("Wan2.2-I2V-A14B-HighNoise-Q4_K_M.gguf", "high_noise"),
    ("Wan2.2-I2V-A14B-LowNoise-Q8_0.gguf", "low_noise"),
    ("wan22_i2v_high_Q5_K_M.gguf", "high_noise"),
    ("my-wan-expert-LOW.gguf", "low_noise"),
    ("wan2.2_i2v_A14B_Q4_K_M.gguf", "unknown"),
    ("highlow_merge.gguf", "unknown"),  # "highlow" is neither token
    ("wan2.2_high_low_noise_mix.gguf", "unknown"),  # names both
    ("wan2.2_i2v_lowvram_Q4.gguf", "unknown"),  # "lowvram" is not the expert
])
def test_expert_from_the_file_name(name, expert):
    assert expert_from(name)[0] == expert


@pytest.mark.core
def test_expert_from_metadata():
    assert expert_from("wan22.gguf", {EXPERT_KEY: "low_noise"}) == ("low_noise", f"metadata {EXPERT_KEY}")
    # The package's own key wins over a name that says otherwise.
    assert expert_from("high_noise.gguf", {EXPERT_KEY: "low_noise"})[0] == "low_noise"
    assert expert_from("wan22.gguf", {"general.name": "Wan2.2-I2V-A14B-HighNoise"}) == (
        "high_noise", "metadata general.name")
    assert expert_from("wan22.gguf", {"general.name": "Wan2.2 I2V A14B"}) == ("unknown", None)
    assert expert_from(None, None) == ("unknown", None)


@pytest.mark.core
def test_version_from_names():
    assert version_from_text("wan2.2_t2v_low_noise_14B.gguf") == "2.2"
    assert version_from_text("Wan2_2-T2V-A14B.gguf") == "2.2"
    assert version_from_text("wan2.1-t2v-14b-Q4_K_M.gguf") == "2.1"
    assert version_from_text("wan21_t2v.gguf") == "2.1"
    assert version_from_text("t2v_14b.gguf", None) is None


# ---------------------------------------------------------------- fixtures


def tiny_sd(tiny_models, key):
    from safetensors.torch import load_file

    return load_file(str(tiny_models[key]))


def write_comfyui_gguf_style(path, sd, quant: str = "F16", five_d: str = "orig_shape"):
    """gguf-py's GGUFWriter the way ComfyUI-GGUF's tools/convert.py (+ fix_5d_tensors) writes Wan:
    arch "wan", bare names, F16 (or Q8_0, as llama.cpp's quantize makes of it) for matrices, F32 for 1-D,
    tiny (<= 1024 values) and ``.modulation`` tensors; the 5-D patch embedding as F32, either with its
    time axis folded (``orig_shape``: its real shape in ``comfy.gguf.orig_shape.<name>``) or 5-D."""
    T = gguf.GGMLQuantizationType
    w = gguf.GGUFWriter(str(path), "wan")
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if quant == "F16" else gguf.LlamaFileType.MOSTLY_Q8_0)
    for key, t in sd.items():
        data = t.float().numpy()
        if data.ndim > 4:
            if five_d == "orig_shape":
                w.add_array(f"comfy.gguf.orig_shape.{key}", [int(d) for d in data.shape])
                data = data.reshape(data.shape[0], data.shape[1], *data.shape[3:])
            w.add_tensor(key, data, raw_dtype=T.F32)
            continue
        if data.ndim == 1 or data.size <= 1024 or ".modulation" in key or key == "head.modulation":
            w.add_tensor(key, data, raw_dtype=T.F32)
        elif quant == "Q8_0" and data.ndim == 2 and data.shape[1] % 32 == 0:
            w.add_tensor(key, gguf.quants.quantize(data, T.Q8_0), raw_dtype=T.Q8_0)
        else:
            w.add_tensor(key, gguf.quants.quantize(data, T.F16), raw_dtype=T.F16)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module")
def wan22_files(comfy, comfy_base, tiny_models):
    """Every Wan 2.2 test file in the ComfyUI diffusion_models folder, with the safetensors of gguf-py's
    dequantization of each (what core UNETLoader loads as the oracle)."""
    from safetensors.torch import save_file

    folder = comfy_base / "models" / "diffusion_models"
    sources = {"high_noise": "wan22_i2v_high", "low_noise": "wan22_i2v_low", "5b": "wan22_ti2v_5b"}
    stems = dict(EXPERT_FILES, **{"5b": "wan2.2_ti2v_5B_tiny"})
    files = {}
    for model, src in sources.items():
        sd = tiny_sd(tiny_models, src)
        for how in ("converter_Q4_K_M", "converter_F32", "comfyui_gguf_F16", "comfyui_gguf_Q8_0", "comfyui_gguf_5d"):
            path = folder / f"{stems[model]}_{how}.gguf"
            if not path.exists():
                if how.startswith("converter"):
                    write_model_gguf(path, sd, how.split("_", 1)[1])
                elif how == "comfyui_gguf_5d":
                    write_comfyui_gguf_style(path, sd, "F16", five_d="5d")
                else:
                    write_comfyui_gguf_style(path, sd, how.rsplit("_", 1)[1] if "Q8" in how else "F16")
            ref = path.with_name(path.stem + "_reference.safetensors")
            if not ref.exists():
                save_file(reference_state_dict(path), str(ref))
            files[model, how] = (path, ref)
    # An expert that neither its name nor its metadata identifies.
    anon = folder / "wan22_i2v_a14b_tiny_Q8_0.gguf"
    if not anon.exists():
        write_model_gguf(anon, tiny_sd(tiny_models, "wan22_i2v_high"), "Q8_0")
    files["anonymous"] = anon
    tagged = folder / "wan22_i2v_a14b_tagged_Q8_0.gguf"
    if not tagged.exists():
        write_model_gguf(tagged, tiny_sd(tiny_models, "wan22_i2v_low"), "Q8_0",
                         metadata={"general.name": "Wan2.2-I2V-A14B-LowNoise"})
    files["tagged"] = tagged
    from twostage_i2v.tiny import models as tiny

    tiny._forget_cached_listings()
    return files


HOWS = ("converter_Q4_K_M", "converter_F32", "comfyui_gguf_F16", "comfyui_gguf_Q8_0", "comfyui_gguf_5d")


# ---------------------------------------------------------------- inspect


def inspect_json(capsys, path) -> dict:
    assert main(["inspect", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.comfy
@pytest.mark.parametrize("how", HOWS)
def test_inspect_names_the_a14b_experts_and_the_5b(wan22_files, capsys, how):
    for expert, words in (("high_noise", "high-noise expert"), ("low_noise", "low-noise expert")):
        s = inspect_json(capsys, wan22_files[expert, how][0])
        assert (s["kind"], s["version"], s["variant"], s["expert"]) == ("wan-i2v", "2.2", "i2v-a14b", expert)
        assert s["description"] == f"Wan 2.2 I2V A14B, {words} (in_dim 36, dim 128, 2 layers)"
        assert s["evidence"]["expert_from"] == "file name" and s["evidence"]["img_emb"] is False
    s = inspect_json(capsys, wan22_files["5b", how][0])
    assert (s["kind"], s["version"], s["variant"], s["expert"]) == ("wan-i2v", "2.2", "ti2v-5b", None)
    assert s["description"] == "Wan 2.2 TI2V dim 128 (in_dim 48, out_dim 48, dim 128, 2 layers)"
    assert (s["evidence"]["in_dim"], s["evidence"]["out_dim"]) == (48, 48)
    assert main(["inspect", str(wan22_files["5b", how][0])]) == 0
    assert "Wan version: 2.2" in capsys.readouterr().out


@pytest.mark.comfy
def test_inspect_expert_from_metadata_or_unknown(wan22_files, tiny_models, capsys):
    s = inspect_json(capsys, wan22_files["tagged"])
    assert s["expert"] == "low_noise" and s["evidence"]["expert_from"] == "metadata general.name"
    s = inspect_json(capsys, wan22_files["anonymous"])
    assert s["expert"] == "unknown" and s["description"].startswith("Wan 2.2 I2V A14B, unknown expert (")
    assert main(["inspect", str(wan22_files["anonymous"])]) == 0
    assert "expert: unknown" in capsys.readouterr().out


@pytest.mark.comfy
def test_convert_verb_keeps_the_expert_in_the_metadata(tiny_models, tmp_path, capsys):
    """A converted expert still says which one it is after the GGUF is renamed."""
    src = tiny_models["wan22_i2v_low"]
    out = tmp_path / "renamed.gguf"
    assert main(["convert", str(src), str(out), "--type", "Q8_0"]) == 0
    capsys.readouterr()
    assert gguf.GGUFReader(str(out)).fields[EXPERT_KEY].contents() == "low_noise"
    s = inspect_json(capsys, out)
    assert s["expert"] == "low_noise" and s["evidence"]["expert_from"] == f"metadata {EXPERT_KEY}"
    plain = tmp_path / "plain.gguf"
    assert main(["convert", str(tiny_models["wan_i2v"]), str(plain), "--type", "Q8_0"]) == 0
    assert EXPERT_KEY not in gguf.GGUFReader(str(plain)).fields


@pytest.mark.comfy
def test_inspect_keeps_wan21_i2v(tiny_models, tmp_path, capsys):
    path = write_model_gguf(tmp_path / "wan2.1-i2v-tiny-Q8_0.gguf", tiny_sd(tiny_models, "wan_i2v"), "Q8_0").path
    s = inspect_json(capsys, path)
    assert (s["kind"], s["version"], s["variant"], s["expert"]) == ("wan-i2v", "2.1", "i2v", None)
    assert s["description"] == "Wan 2.1 I2V dim 128 (in_dim 36, dim 128, 2 layers)"


# ---------------------------------------------------------------- the loader against core UNETLoader


def load_gguf(comfy, name):
    return comfy.node_class(LOADER).execute(name).result[0]


def load_unet(comfy, name):
    return comfy.nodes.UNETLoader().load_unet(name, "default")[0]


def model_output(patcher, model: str, seed: int = 0):
    """The diffusion model's prediction on fixed random inputs: an A14B expert gets Wan's 20 concat
    channels (mask + image latent) beside 16 noise channels, the 5B 48 latent channels."""
    import comfy.model_management

    g = torch.Generator().manual_seed(seed)
    channels = 48 if model == "5b" else 16
    x = torch.randn(1, channels, 3, 8, 8, generator=g)
    kwargs = {"c_crossattn": torch.randn(1, 16, 4096, generator=g)}
    if model != "5b":
        kwargs["c_concat"] = torch.randn(1, 20, 3, 8, 8, generator=g)
    comfy.model_management.load_models_gpu([patcher], force_full_load=True)
    try:
        with torch.no_grad():
            return patcher.model.apply_model(x, torch.tensor([0.7]), **kwargs).float()
    finally:
        comfy.model_management.unload_all_models()


@pytest.mark.comfy
@pytest.mark.parametrize("model", ["high_noise", "low_noise", "5b"])
@pytest.mark.parametrize("how", HOWS)
def test_output_equals_core_unet_loader(comfy, wan22_files, model, how):
    path, ref = wan22_files[model, how]
    ours = model_output(load_gguf(comfy, path.name), model)
    core = model_output(load_unet(comfy, ref.name), model)
    assert torch.isfinite(core).all() and core.abs().max() > 0
    assert ours.shape == core.shape == (1, 48 if model == "5b" else 16, 3, 8, 8)
    assert rel_max_err(ours, core) <= 1e-4


@pytest.mark.comfy
def test_the_two_experts_are_different_models(comfy, wan22_files):
    """The oracle above could not tell the experts apart if they were one model: they are not."""
    high = model_output(load_gguf(comfy, wan22_files["high_noise", "converter_F32"][0].name), "high_noise")
    low = model_output(load_gguf(comfy, wan22_files["low_noise", "converter_F32"][0].name), "low_noise")
    assert rel_max_err(high, low) > 0.1


@pytest.mark.comfy
def test_comfyui_builds_the_models_core_builds(comfy, wan22_files):
    """The 5B is ComfyUI's WAN22 model with the Wan 2.2 latent format (48 channels), the A14B experts
    its Wan 2.1 model without image embedding, through this loader as through UNETLoader."""
    import comfy.latent_formats as lf

    for model, cls, latent in (("5b", "WAN22", lf.Wan22), ("high_noise", "WAN21", lf.Wan21)):
        path, ref = wan22_files[model, "converter_Q4_K_M"]
        for patcher in (load_gguf(comfy, path.name), load_unet(comfy, ref.name)):
            assert type(patcher.model).__name__ == cls
            assert type(patcher.model.latent_format) is latent
            assert patcher.model.latent_format.latent_channels == (48 if model == "5b" else 16)
            assert not any(k.startswith("img_emb.") for k in patcher.model.diffusion_model.state_dict())


@pytest.mark.comfy
def test_loader_logs_what_it_loaded(comfy, wan22_files, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="twostage_i2v"):
        load_gguf(comfy, wan22_files["low_noise", "converter_Q4_K_M"][0].name)
    assert "Wan 2.2 I2V A14B, low-noise expert" in caplog.text


# ---------------------------------------------------------------- speed LoRAs


@pytest.mark.comfy
@pytest.mark.parametrize("expert,lora", [("high_noise", "wan22_lightx2v_lora_high"),
                                         ("low_noise", "wan22_lightx2v_lora_low")])
def test_lightx2v_layout_lora_on_an_expert_matches_native(comfy, wan22_files, tiny_models, expert, lora, caplog):
    """The tiny speed LoRAs (lora_down/up or lora_A/B with alpha, .diff on norms, .diff_b on biases)
    patch every key on the GGUF expert exactly as core does on the same weights."""
    import logging

    node = comfy.nodes.LoraLoaderModelOnly()
    name = tiny_models[lora].name
    path, ref = wan22_files[expert, "converter_F32"]
    with caplog.at_level(logging.WARNING):
        native = model_output(node.load_lora_model_only(load_unet(comfy, ref.name), name, 1.0)[0], expert, 5)
        ours = model_output(node.load_lora_model_only(load_gguf(comfy, path.name), name, 1.0)[0], expert, 5)
    assert "lora key not loaded" not in caplog.text.lower(), caplog.text
    plain = model_output(load_unet(comfy, ref.name), expert, 5)
    assert rel_max_err(native, plain) > 1e-2, "the LoRA changed nothing: the comparison would prove nothing"
    assert rel_max_err(ours, native) <= 1e-4


# ---------------------------------------------------------------- refusals


def _refusal(comfy, path, *needles):
    with pytest.raises(ValueError) as info:
        comfy.core("comfy.wan_loader").load_wan_i2v(path)
    msg = str(info.value)
    assert path.name in msg
    for n in needles:
        assert n in msg, msg
    return msg


def write_f32_gguf(path, shapes: dict[str, tuple]):
    """Zero tensors of these shapes (F32, 5-D ones with their real shape in the metadata)."""
    w = gguf.GGUFWriter(str(path), "wan")
    for name, shape in shapes.items():
        data = np.zeros(shape, np.float32)
        if len(shape) > 4:
            w.add_array(f"comfy.gguf.orig_shape.{name}", list(shape))
            data = data.reshape(shape[0], -1)
        w.add_tensor(name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.mark.comfy
def test_refuses_wan22_t2v_with_the_files_to_pick(comfy, tmp_path, tiny_models):
    path = tmp_path / "wan2.2_t2v_high_noise_14B_Q8_0.gguf"
    write_model_gguf(path, tiny_sd(tiny_models, "wan_t2v"), "Q8_0")
    msg = _refusal(comfy, path, "Wan 2.2 T2V A14B, high-noise expert", "T2V (text-to-video)",
                   "wan2.2_i2v_high_noise_14B_Q4_K_M.gguf", "wan2.2_i2v_low_noise_14B_Q4_K_M.gguf",
                   "Wan2.2-TI2V-5B-Q4_K_M.gguf", "wan2.1-i2v-14b-480p-Q4_K_M.gguf")
    assert msg.startswith(f"{path.name} is a Wan 2.2 T2V A14B")
    anon = tmp_path / "t2v_14b_Q8_0.gguf"
    write_model_gguf(anon, tiny_sd(tiny_models, "wan_t2v"), "Q8_0")
    _refusal(comfy, anon, "Wan 2.1 T2V dim 128 or a Wan 2.2 T2V A14B expert", "text-to-video")


def _variant_shapes(base: dict, extra: dict, drop_img: bool = False, in_dim: int | None = None,
                    out_dim: int | None = None) -> dict:
    shapes = {k: tuple(v) for k, v in base.items() if not (drop_img and ("img_emb" in k or "_img" in k))}
    pe = list(shapes["patch_embedding.weight"])
    if in_dim:
        pe[1] = in_dim
        shapes["patch_embedding.weight"] = tuple(pe)
    if out_dim:
        shapes["head.head.weight"] = (out_dim * 4, shapes["head.head.weight"][1])
        shapes["head.head.bias"] = (out_dim * 4,)
    shapes.update(extra)
    return shapes


VARIANTS = {
    # name: (base kind, extra tensors, drop img_emb, in_dim, out_dim, description start, ComfyUI node)
    "vace": ("t2v", {"vace_patch_embedding.weight": (128, 96, 1, 2, 2)}, False, None, None,
             "Wan VACE, video editing", "WanVaceToVideo"),
    "camera21": ("i2v", {"control_adapter.conv.weight": (128, 24, 1, 1)}, False, 32, None,
                 "Wan 2.1 Fun Camera", "WanCameraImageToVideo"),
    "camera22": ("i2v", {"control_adapter.conv.weight": (128, 24, 1, 1)}, True, None, None,
                 "Wan 2.2 Fun Camera", "WanCameraImageToVideo"),
    "s2v": ("t2v", {"casual_audio_encoder.encoder.final_linear.weight": (128, 128)}, False, None, None,
            "Wan 2.2 S2V, speech-to-video", "WanSoundImageToVideo"),
    "animate": ("i2v", {"face_adapter.fuser_blocks.0.k_norm.weight": (128,)}, False, None, None,
                "Wan 2.2 Animate", "WanAnimateToVideo"),
    "humo": ("t2v", {"audio_proj.audio_proj_glob_1.layer.bias": (128,)}, False, None, None,
             "HuMo", "WanHuMoImageToVideo"),
    "fun_control21": ("i2v", {}, False, 48, None, "Wan 2.1 Fun Control", "WanFunControlToVideo"),
    "fun_control22": ("i2v", {}, True, 48, None, "Wan 2.2 Fun Control", "Wan22FunControlToVideo"),
    "flf2v": ("i2v", {"img_emb.emb_pos": (1, 514, 1280)}, False, None, None,
              "Wan 2.1 FLF2V, first-last-frame", "WanFirstLastFrameToVideo"),
    "5b_fun": ("t2v", {}, False, 100, 48, "a Wan 2.2 5B variant with 100 input channels", None),
}


@pytest.mark.comfy
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_names_and_refuses_other_wan_variants(comfy, tmp_path, name):
    from twostage_i2v.tiny.models import wan_shapes

    base, extra, drop_img, in_dim, out_dim, description, node = VARIANTS[name]
    shapes = _variant_shapes(wan_shapes(base), extra, drop_img, in_dim, out_dim)
    kind = classify(shapes, "wan", f"{name}.gguf")
    assert kind.kind == "wan-variant" and kind.describe().startswith(description), kind.describe()
    path = write_f32_gguf(tmp_path / f"{name}.gguf", shapes)
    needles = [description, "not an image-to-video model this loader takes", "wan2.2_i2v_high_noise_14B_Q4_K_M.gguf",
               "Wan2.2-TI2V-5B-Q4_K_M.gguf"]
    if node:
        needles.append(f"ComfyUI drives it with {node}")
    _refusal(comfy, path, *needles)


@pytest.mark.comfy
@pytest.mark.parametrize("model", ["high_noise", "5b"])
def test_packed_memory_path_equals_core_unet_loader(comfy, wan22_files, model):
    """The dynamic-VRAM path (packed comfy-kitchen QuantizedTensors), run on the CPU through core ops."""
    features = comfy.core("comfy.features")
    loader = comfy.core("comfy.wan_loader")
    path, ref = wan22_files[model, "converter_Q4_K_M"]
    native = {loader.WEIGHT_PATH_OPTION: "native"}
    if not features.native_qt_available():
        # 0.3.75: no comfy-kitchen layouts, hence no dynamic path to take.
        with pytest.raises(RuntimeError, match="no comfy-kitchen QuantizedTensor layouts"):
            loader.load_wan_i2v(path, native)
        return
    layout = comfy.core("comfy.layout")
    packed = loader.load_wan_i2v(path, native)
    assert any(layout.is_ggml_qt(getattr(m, "weight", None)) for m in packed.model.diffusion_model.modules())
    core = model_output(load_unet(comfy, ref.name), model, 3)
    assert rel_max_err(model_output(packed, model, 3), core) <= 1e-4
