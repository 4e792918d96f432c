"""'Load Wan I2V Model (GGUF)' against ComfyUI's own UNETLoader, on the real ComfyUI."""

from __future__ import annotations

import gc
import os

import gguf
import numpy as np
import pytest
import torch

from twostage_i2v.tiny import models as tiny_models
from twostage_i2v.headless.api_graphs import decode_video, saved_videos, wan_i2v_prompt, write_start_image
from twostage_i2v.models.wan_convert import write_model_gguf

pytestmark = pytest.mark.comfy
LOADER = "TwoStageI2V_WanI2VLoaderGGUF"


@pytest.fixture(scope="module")
def wan_files(comfy, comfy_base, tiny_models):
    """GGUF conversions of the tiny I2V model, and safetensors of gguf-py's dequantization of each."""
    from safetensors.torch import load_file, save_file

    folder = comfy_base / "models" / "diffusion_models"
    src = tiny_models["wan_i2v"]
    sd = load_file(str(src))
    files = {}
    for recipe in ("F32", "Q8_0", "Q4_K_M"):
        path = folder / f"wan_tiny_{recipe}.gguf"
        if not path.exists():
            write_model_gguf(path, sd, recipe)
        files[recipe] = path
    mixed = folder / "wan_tiny_mixed.gguf"
    if not mixed.exists():
        files["mixed_plan"] = tiny_models_mod().write_mixed_wan_gguf(src, mixed)
    files["mixed"] = mixed
    for key in ("Q8_0", "Q4_K_M", "mixed"):
        ref = folder / f"wan_tiny_{key}_reference.safetensors"
        if not ref.exists():
            save_file(reference_state_dict(files[key]), str(ref))
        files[key + "_ref"] = ref
    tiny_models_mod()._forget_cached_listings()
    return files


def tiny_models_mod():
    return tiny_models


def reference_state_dict(path) -> dict[str, torch.Tensor]:
    """gguf-py's (the llama.cpp team's numpy reference) dequantization of every tensor."""
    reader = gguf.GGUFReader(str(path))
    out = {}
    for t in reader.tensors:
        values = gguf.quants.dequantize(t.data, t.tensor_type)
        shape = [int(s) for s in reversed(t.shape.tolist())]
        f = reader.fields.get(f"comfy.gguf.orig_shape.{t.name}")
        if f is not None:
            shape = [int(v) for v in f.contents()]
        out[t.name] = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).reshape(shape)
    return out


def load_gguf(comfy, name):
    return comfy.node_class(LOADER).execute(name).result[0]


def load_unet(comfy, name):
    return comfy.nodes.UNETLoader().load_unet(name, "default")[0]


def wan_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        x=torch.randn(1, 16, 3, 8, 8, generator=g),
        t=torch.tensor([0.7]),
        c_concat=torch.randn(1, 20, 3, 8, 8, generator=g),
        c_crossattn=torch.randn(1, 16, 4096, generator=g),
        clip_fea=torch.randn(1, 257, 1280, generator=g),
    )


def model_output(patcher, inputs):
    import comfy.model_management

    comfy.model_management.load_models_gpu([patcher], force_full_load=True)
    try:
        with torch.no_grad():
            return patcher.model.apply_model(
                inputs["x"], inputs["t"], c_concat=inputs["c_concat"], c_crossattn=inputs["c_crossattn"],
                clip_fea=inputs["clip_fea"],
            ).float()
    finally:
        # Unpatches (LoRA) and keeps ComfyUI's loaded-model list from filling with test leftovers.
        comfy.model_management.unload_all_models()


def mapped_file_of(address: int) -> str | None:
    """The file whose memory mapping holds ``address`` in this process (Linux /proc)."""
    with open("/proc/self/maps") as fh:
        for line in fh:
            parts = line.split(maxsplit=5)
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            if lo <= address < hi:
                return parts[5].strip() if len(parts) == 6 else None
    return None


def rel_max_err(a, b):
    return float((a - b).abs().max() / b.abs().max())


def test_f32_gguf_output_identical_to_core_unet_loader(comfy, wan_files):
    inputs = wan_inputs()
    ours = model_output(load_gguf(comfy, wan_files["F32"].name), inputs)
    core = model_output(load_unet(comfy, "wan2.1_i2v_tiny_fp32.safetensors"), inputs)
    assert torch.isfinite(core).all() and core.abs().max() > 0
    assert torch.equal(ours, core)


@pytest.mark.parametrize("key", ["Q8_0", "Q4_K_M", "mixed"])
def test_quantized_gguf_matches_core_loader_on_reference_dequantization(comfy, wan_files, key):
    inputs = wan_inputs(1)
    patcher = load_gguf(comfy, wan_files[key].name)
    ggml = comfy.core("gguf.ggml_tensor").GGMLTensor
    quantized = [n for n, p in patcher.model.diffusion_model.named_parameters() if isinstance(p, ggml)]
    assert quantized, "weights were not kept quantized"
    ours = model_output(patcher, inputs)
    core = model_output(load_unet(comfy, wan_files[key + "_ref"].name), inputs)
    assert torch.isfinite(core).all()
    assert rel_max_err(ours, core) <= 1e-4


def test_mixed_file_uses_every_supported_type(wan_files):
    from twostage_i2v.gguf.ggml_types import supported_names
    from twostage_i2v.gguf.reader import read_gguf

    used = {t.type_name for t in read_gguf(wan_files["mixed"]).tensors.values()}
    assert used == set(supported_names())


def test_loading_keeps_weights_quantized_in_parameter_storage(comfy, wan_files):
    from twostage_i2v.gguf.reader import read_gguf

    patcher = load_gguf(comfy, wan_files["Q4_K_M"].name)
    f = read_gguf(wan_files["Q4_K_M"])
    params = dict(patcher.model.diffusion_model.named_parameters())
    for name, t in f.tensors.items():
        p = params[name]
        if t.type_name in ("F32", "F16", "BF16"):
            continue
        assert isinstance(p, comfy.core("gguf.ggml_tensor").GGMLTensor) and p.quantized_nbytes == t.nbytes
        # The bytes live in the file's memory map: nothing was copied or dequantized.
        assert mapped_file_of(p.raw.data_ptr()) == str(wan_files["Q4_K_M"])
    # ComfyUI's memory accounting sees the stored (quantized) size, not a float one.
    stored = sum(t.nbytes for t in f.tensors.values())
    float_bytes = sum(np.prod(t.shape) * 4 for t in f.tensors.values())
    assert stored < 0.7 * float_bytes
    assert patcher.model_size() == pytest.approx(stored, rel=0.01)


@pytest.fixture(scope="module")
def wan_lora(comfy, comfy_base):
    """A seeded random LoRA on the tiny Wan model, in models/loras/ (the LoRA tests share it)."""
    from safetensors.torch import save_file

    lora_path = comfy_base / "models" / "loras" / "wan_tiny_lora.safetensors"
    lora_path.parent.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(9)
    lora = {}
    for block in (0, 1):
        for proj in ("self_attn.q", "cross_attn.v", "ffn.0"):
            out_f, in_f = (256, 128) if proj == "ffn.0" else (128, 128)
            key = f"diffusion_model.blocks.{block}.{proj}"
            lora[f"{key}.lora_down.weight"] = torch.randn(4, in_f, generator=g) * 0.1
            lora[f"{key}.lora_up.weight"] = torch.randn(out_f, 4, generator=g) * 0.1
    save_file(lora, str(lora_path))
    tiny_models._forget_cached_listings()
    return lora_path


def test_lora_on_quantized_and_f32_gguf_matches_native(comfy, wan_files, wan_lora):
    lora_path = wan_lora
    node = comfy.nodes.LoraLoaderModelOnly()
    inputs = wan_inputs(2)

    def with_lora(patcher):
        return node.load_lora_model_only(patcher, lora_path.name, 0.8)[0]

    native = model_output(with_lora(load_unet(comfy, "wan2.1_i2v_tiny_fp32.safetensors")), inputs)
    plain = model_output(load_unet(comfy, "wan2.1_i2v_tiny_fp32.safetensors"), inputs)
    assert (native - plain).abs().max() > 1e-3, "the LoRA changed nothing: the test would prove nothing"
    f32 = model_output(with_lora(load_gguf(comfy, wan_files["F32"].name)), inputs)
    assert (f32 - native).abs().max() <= 1e-4

    q8 = model_output(with_lora(load_gguf(comfy, wan_files["Q8_0"].name)), inputs)
    q8_ref = model_output(with_lora(load_unet(comfy, wan_files["Q8_0_ref"].name)), inputs)
    assert (q8 - q8_ref).abs().max() <= 1e-4
    # Unpatching (model_output unloads) restores the plain quantized model.
    q8_plain = model_output(load_gguf(comfy, wan_files["Q8_0"].name), inputs)
    q8_ref_plain = model_output(load_unet(comfy, wan_files["Q8_0_ref"].name), inputs)
    assert rel_max_err(q8_plain, q8_ref_plain) <= 1e-4


def test_gguf_model_in_ksampler_graph_writes_video(comfy, comfy_base, tiny_models, wan_files):
    image = write_start_image(comfy_base / "input")
    node = {"class_type": LOADER, "inputs": {"unet_name": wan_files["Q4_K_M"].name}}
    shift = {"shift": {"class_type": "ModelSamplingSD3", "inputs": {"model": ["unet", 0], "shift": 3.0}}}
    prompt = wan_i2v_prompt(tiny_models, image, model_node=node, extra_model_nodes=shift,
                            model_ref=("shift", 0), length=5, prefix="loader/q4km")
    result = comfy.run_prompt(prompt)
    videos = saved_videos(result.outputs, comfy_base / "output")
    frames, fps, w, h, _ = decode_video(videos[0])
    assert (frames, fps, w, h) == (5, 16.0, 64, 64)


@pytest.mark.slow
def test_torch_compile_model_node_compiles_around_dequantization(comfy, wan_files):
    """TorchCompileModel (inductor) on a Q8_0 model samples what the eager model samples."""
    import nodes as core_nodes

    model = load_gguf(comfy, wan_files["Q8_0"].name)
    compiled = comfy.node_class("TorchCompileModel").execute(model, "inductor").result[0]
    g = torch.Generator().manual_seed(3)
    latent = {"samples": torch.randn(1, 16, 3, 8, 8, generator=g)}
    cond = [[torch.randn(1, 16, 4096, generator=g),
             {"concat_latent_image": torch.randn(1, 16, 3, 8, 8, generator=g), "concat_mask": torch.ones(1, 4, 3, 8, 8)}]]

    def sample(m):
        return core_nodes.common_ksampler(m, 5, 2, 1.0, "euler", "simple", cond, cond, latent)[0]["samples"]

    eager = sample(model)
    assert rel_max_err(sample(compiled), eager) <= 1e-4
    assert any(type(m).__module__.endswith("twostage_i2v.comfy.ops") for m in model.model.diffusion_model.modules())


# ---------------------------------------------------------------- refusals


def _expect_refusal(comfy, path, *needles):
    with pytest.raises(ValueError) as info:
        comfy.core("comfy.wan_loader").load_wan_i2v(path)
    msg = str(info.value)
    assert path.name in msg
    for n in needles:
        assert n in msg, msg
    return msg


def test_refuses_t2v_model(comfy, comfy_base, tiny_models):
    from safetensors.torch import load_file

    path = comfy_base / "models" / "diffusion_models" / "wan_tiny_t2v_Q8_0.gguf"
    if not path.exists():
        write_model_gguf(path, load_file(str(tiny_models["wan_t2v"])), "Q8_0")
    _expect_refusal(comfy, path, "T2V", "text-to-video", "I2V", "wan2.1-i2v-14b-480p-Q4_K_M.gguf")


def test_refuses_other_architectures(comfy, tmp_path):
    sdxl = tmp_path / "sdxl_unet.gguf"
    w = gguf.GGUFWriter(str(sdxl), "sdxl")
    w.add_tensor("input_blocks.0.0.weight", np.zeros((320, 4, 3, 3), np.float32))
    w.add_tensor("out.2.weight", np.zeros((4, 320, 3, 3), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    _expect_refusal(comfy, sdxl, "SDXL", "not a Wan image-to-video model", "wan2.1-i2v-14b-480p-Q4_K_M.gguf")

    llm = tmp_path / "tinyllama-Q8_0.gguf"
    w = gguf.GGUFWriter(str(llm), "llama")
    w.add_tensor("token_embd.weight", np.zeros((64, 32), np.float32))
    w.add_tensor("blk.0.attn_q.weight", np.zeros((32, 32), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    _expect_refusal(comfy, llm, "language model", "not a Wan image-to-video model")


def test_refuses_truncated_and_non_gguf_files(comfy, tmp_path, wan_files):
    data = wan_files["Q8_0"].read_bytes()
    cut = tmp_path / "wan_cut.gguf"
    cut.write_bytes(data[: len(data) * 2 // 3])
    _expect_refusal(comfy, cut, "truncated", "download it again")

    fake = tmp_path / "wan_fake.gguf"
    fake.write_bytes(b"PK\x03\x04" + b"\0" * 64)
    _expect_refusal(comfy, fake, "not a GGUF file")


def test_refuses_unsupported_quant_type_naming_it(comfy, tmp_path, wan_files):
    """A file with a type the loader has no dequantizer for (IQ2_XXS) is refused by name."""
    src = gguf.GGUFReader(str(wan_files["Q8_0"]))
    path = tmp_path / "wan_iq2.gguf"
    w = gguf.GGUFWriter(str(path), "wan")
    for t in src.tensors:
        shape = [int(s) for s in reversed(t.shape.tolist())]
        if t.name == "blocks.0.ffn.2.weight":
            bs, ts = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.IQ2_XXS]
            raw = np.zeros((shape[0], shape[1] // bs * ts), np.uint8)
            w.add_tensor(t.name, raw, raw_dtype=gguf.GGMLQuantizationType.IQ2_XXS)
        elif t.tensor_type == gguf.GGMLQuantizationType.F32:
            w.add_tensor(t.name, np.asarray(t.data).reshape(shape) if len(shape) <= 4 else np.asarray(t.data))
        else:
            w.add_tensor(t.name, np.asarray(t.data), raw_dtype=t.tensor_type)
    for key, field in src.fields.items():
        if key.startswith("comfy.gguf.orig_shape."):
            w.add_array(key, [int(v) for v in field.contents()])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    _expect_refusal(comfy, path, "IQ2_XXS", "blocks.0.ffn.2.weight", "Q4_K_M")


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("TWOSTAGE_SKIP_RSS") == "1", reason="explicitly disabled")
def test_loading_a_large_gguf_does_not_materialise_weights(comfy, tmp_path):
    """A >= 200 MB Q8_0 Wan-shaped model: RSS grows by far less than its float size."""
    import psutil

    big = dict(tiny_models.WAN_TINY, dim=1024, ffn_dim=4096, num_heads=8, num_layers=9)
    import comfy.ldm.wan.model as wan_model
    import comfy.ops as ops

    with torch.device("meta"):
        model = wan_model.WanModel(model_type="i2v", in_dim=36, operations=ops.manual_cast, **big)
    sd = tiny_models.randomise({k: tuple(v.shape) for k, v in model.state_dict().items()}, seed=3)
    path = tmp_path / "wan_big_Q8_0.gguf"
    write_model_gguf(path, sd, "Q8_0")
    float_bytes = sum(v.numel() * 4 for v in sd.values())
    del sd, model
    gc.collect()
    size = path.stat().st_size
    assert size >= 200e6
    proc = psutil.Process()
    before = proc.memory_info().rss
    patcher = comfy.core("comfy.wan_loader").load_wan_i2v(path)
    grown = proc.memory_info().rss - before
    assert grown < 0.25 * float_bytes, (grown, float_bytes)
    assert patcher.model_size() < 0.35 * float_bytes


# ---------------------------------------------------------------- packed (dynamic-VRAM) weights


def test_packed_layout_path_gives_legacy_results(comfy, wan_files):
    """The QuantizedTensor layout that dynamic VRAM streams, run on the CPU through core ops."""
    features = comfy.core("comfy.features")
    loader = comfy.core("comfy.wan_loader")
    native = {loader.WEIGHT_PATH_OPTION: "native"}
    if not features.native_qt_available():
        # 0.3.75: no comfy-kitchen layouts, hence no dynamic path to take.
        with pytest.raises(RuntimeError, match="no comfy-kitchen QuantizedTensor layouts"):
            loader.load_wan_i2v(wan_files["mixed"], native)
        return
    layout = comfy.core("comfy.layout")
    inputs = wan_inputs(3)
    for key in ("Q4_K_M", "mixed"):
        packed = loader.load_wan_i2v(wan_files[key], native)
        qts = [m.weight for m in packed.model.diffusion_model.modules() if layout.is_ggml_qt(getattr(m, "weight", None))]
        assert qts
        legacy = model_output(loader.load_wan_i2v(wan_files[key], {loader.WEIGHT_PATH_OPTION: "legacy"}), inputs)
        assert rel_max_err(model_output(packed, inputs), legacy) <= 1e-5


def test_packed_tensor_survives_dynamic_vram_buffers(comfy, wan_files):
    """Flatten into a shared buffer and rebuild, as ModelPatcherDynamic does per layer."""
    features = comfy.core("comfy.features")
    if not features.native_qt_available():
        import comfy.quant_ops as q  # 0.3.75: its own QuantizedTensor, no layout registry

        assert not hasattr(q, "register_layout_class")
        return
    import comfy.memory_management as cmm
    from comfy_kitchen.tensor import QuantizedTensor

    layout = comfy.core("comfy.layout")
    f = comfy.core("gguf.reader").read_gguf(wan_files["mixed"])
    wan = comfy.core("models.wan_file")
    for name, t in f.tensors.items():
        g = wan.tensor_from_gguf(t)
        if not isinstance(g, comfy.core("gguf.ggml_tensor").GGMLTensor) or len(t.shape) != 2:
            continue
        qt = layout.to_quantized_tensor(g, torch.float32)
        assert qt.shape == torch.Size(t.shape) and qt.nbytes == t.nbytes
        buf = torch.empty(cmm.vram_aligned_size([qt]), dtype=torch.uint8)
        (view,) = cmm.interpret_gathered_like([qt], buf)
        view.copy_(qt)
        assert type(view) is QuantizedTensor and layout.is_ggml_qt(view)
        ref = torch.from_numpy(gguf.quants.dequantize(np.asarray(t.data).reshape(t.shape[0], -1), t.qtype))
        torch.testing.assert_close(view.dequantize(), ref.reshape(t.shape), rtol=0, atol=0)
        x = torch.randn(3, 5, t.shape[1])
        expect = torch.nn.functional.linear(x, ref.reshape(t.shape))
        with torch.inference_mode():
            torch.testing.assert_close(torch.nn.functional.linear(x, view), expect)
        torch.testing.assert_close(torch.nn.functional.linear(x, view), expect)  # t + mm/addmm fallback


def test_packed_weights_take_lora_without_requantizing(comfy, wan_files, wan_lora):
    features = comfy.core("comfy.features")
    loader = comfy.core("comfy.wan_loader")
    if not features.native_qt_available():
        with pytest.raises(RuntimeError, match="use the legacy path"):
            loader.load_wan_i2v(wan_files["Q8_0"], {loader.WEIGHT_PATH_OPTION: "native"})
        return
    lora_name = wan_lora.name
    node = comfy.nodes.LoraLoaderModelOnly()
    inputs = wan_inputs(4)
    packed = node.load_lora_model_only(loader.load_wan_i2v(wan_files["Q8_0"], {loader.WEIGHT_PATH_OPTION: "native"}), lora_name, 0.8)[0]
    legacy = node.load_lora_model_only(loader.load_wan_i2v(wan_files["Q8_0"]), lora_name, 0.8)[0]
    assert rel_max_err(model_output(packed, inputs), model_output(legacy, inputs)) <= 1e-5
