"""Small random-weight models for tests and the demo, built with ComfyUI's own
classes so every key name and shape is the one ComfyUI's loaders expect.

Built once per machine into a cache folder outside the repository
(``TWOSTAGE_MODEL_CACHE``, default ``~/.cache/twostage-i2v/models``), then
linked into a ComfyUI base directory. Needs ComfyUI imported (see headless.inprocess).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

# Bump when a builder changes what it writes, so stale caches are rebuilt.
FACTORY_VERSION = "1"

WAN_TINY = dict(dim=128, ffn_dim=256, num_heads=1, num_layers=2, freq_dim=256, text_dim=4096, out_dim=16)
VAE_BASE_DIM = 16


def cache_dir() -> Path:
    root = os.environ.get("TWOSTAGE_MODEL_CACHE") or Path.home() / ".cache" / "twostage-i2v" / "models"
    path = Path(root) / f"v{FACTORY_VERSION}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def randomise(shapes: dict[str, tuple], seed: int, dtype=torch.float32) -> dict[str, torch.Tensor]:
    """Seeded weights that keep activations in a sane range through deep stacks.

    Norm scales near 1, small biases, matrices scaled by 1/sqrt(fan_in) so that
    random models still produce finite, non-trivial outputs.
    """
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name in sorted(shapes):
        shape = tuple(shapes[name])
        leaf = name.rsplit(".", 1)[-1]
        owner = name.rsplit(".", 2)[-2] if name.count(".") >= 1 else ""
        is_norm = leaf == "gamma" or any(s in owner for s in ("norm", "ln_", "layernorm")) or owner.startswith("ln")
        if is_norm and leaf in ("weight", "gamma", "scale"):
            t = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        elif leaf == "bias" or len(shape) <= 1:
            t = 0.02 * torch.randn(shape, generator=gen)
        elif "modulation" in name:
            t = torch.randn(shape, generator=gen) / math.sqrt(shape[-1])
        elif "embedding" in name and len(shape) == 2 and "patch" not in name:
            t = 0.02 * torch.randn(shape, generator=gen)
        else:
            fan_in = math.prod(shape[1:])
            t = torch.randn(shape, generator=gen) / math.sqrt(fan_in)
        out[name] = t.to(dtype).contiguous()
    return out


def _meta_shapes(module: torch.nn.Module) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def wan_shapes(kind: str = "i2v", config: dict | None = None) -> dict[str, tuple]:
    """Tensor name -> shape of a Wan 2.1 diffusion model, I2V (in_dim 36, img_emb) or T2V
    (in_dim 16), of ``WanModel`` arguments ``config`` (default: the tiny ``WAN_TINY``)."""
    import comfy.ldm.wan.model
    import comfy.ops

    with torch.device("meta"):
        model = comfy.ldm.wan.model.WanModel(model_type=kind, in_dim=36 if kind == "i2v" else 16,
                                             operations=comfy.ops.manual_cast, **(config or WAN_TINY))
    return _meta_shapes(model)


def wan_state_dict(kind: str = "i2v", seed: int = 1) -> dict[str, torch.Tensor]:
    """The tiny Wan 2.1 diffusion model: I2V or T2V."""
    return randomise(wan_shapes(kind), seed)


def wan_vae_state_dict(seed: int = 2) -> dict[str, torch.Tensor]:
    import comfy.ldm.wan.vae

    with torch.device("meta"):
        model = comfy.ldm.wan.vae.WanVAE(
            dim=VAE_BASE_DIM, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
            attn_scales=[], temperal_downsample=[False, True, True],
        )
    return randomise(_meta_shapes(model), seed)


def clip_vision_h_state_dict(seed: int = 3) -> dict[str, torch.Tensor]:
    """Full-size CLIP ViT-H/14: ComfyUI picks its config by key names and Wan
    fixes the 1280 width, so no smaller stand-in loads through the core node."""
    import json

    import comfy.clip_model
    import comfy.clip_vision
    import comfy.ops

    cfg_path = Path(comfy.clip_vision.__file__).parent / "clip_vision_config_h.json"
    config = json.loads(cfg_path.read_text())
    with torch.device("meta"):
        model = comfy.clip_model.CLIPVisionModelProjection(config, torch.float32, "meta", comfy.ops.manual_cast)
    # fp16 on disk halves the 2.5 GB file; ComfyUI casts on load.
    return randomise(_meta_shapes(model), seed, dtype=torch.float16)


def save_safetensors(sd: dict[str, torch.Tensor], path: Path, description: str = "tiny random model") -> None:
    """Write through a ``.part`` file, so an interrupted build never leaves a truncated model in the cache."""
    from safetensors.torch import save_file

    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".part")
    save_file(sd, str(tmp), metadata={"twostage_i2v": f"{description}, factory v{FACTORY_VERSION}"})
    tmp.replace(path)


def _build_umt5(path: Path, type_name: str) -> None:
    from . import umt5 as tiny_umt5

    tiny_umt5.write_tiny_umt5_gguf(path, type_name)


def _build_sdxl(path: Path) -> None:
    from . import sdxl as tiny_sdxl

    tiny_sdxl.write_tiny_sdxl(path)


def _build_wan_gguf(path: Path, recipe: str) -> None:
    """The tiny Wan I2V model converted with the package's own writer: the GGUF loader node reads GGUF only."""
    from safetensors.torch import load_file

    from ..models.wan_convert import write_model_gguf

    tmp = path.with_name(path.name + ".part")
    write_model_gguf(tmp, load_file(str(build("wan_i2v"))), recipe, force=True)
    tmp.replace(path)


@dataclass(frozen=True)
class TinyModel:
    file_name: str
    folder: str  # ComfyUI model folder name (folder_paths)
    build: Callable[[Path], None]


def _st(fn):
    return lambda path: save_safetensors(fn(), path)


def _wan22_models() -> dict[str, TinyModel]:
    """Wan 2.2 (tiny.wan22): the two I2V A14B experts, a TI2V-5B-shaped model, the Wan 2.2 VAE, and
    lightx2v-layout speed LoRAs (a Wan 2.1 I2V one, and the A14B high/low pair)."""

    def w22(fn_name, *args):
        def make():
            from . import wan22

            return getattr(wan22, fn_name)(*args)
        return make

    def lora(kind, seed, style):
        def make():
            from . import wan22

            shapes = wan_shapes("i2v") if kind == "wan21" else wan22.wan22_shapes("i2v")
            return wan22.lightx2v_lora(shapes, seed, style)
        return make

    def gguf(source, recipe):
        def make(path):
            from . import wan22

            wan22.write_expert_gguf(path, source, recipe)
        return make

    dm = "diffusion_models"
    return {
        "wan22_i2v_high": TinyModel("wan2.2_i2v_high_noise_tiny_fp32.safetensors", dm,
                                    _st(w22("expert_state_dict", "high_noise"))),
        "wan22_i2v_low": TinyModel("wan2.2_i2v_low_noise_tiny_fp32.safetensors", dm,
                                   _st(w22("expert_state_dict", "low_noise"))),
        "wan22_ti2v_5b": TinyModel("wan2.2_ti2v_5B_tiny_fp32.safetensors", dm, _st(w22("ti2v_state_dict"))),
        "wan22_vae": TinyModel("wan2.2_vae_random.safetensors", "vae", _st(w22("vae_state_dict"))),
        "wan22_i2v_high_q4_k_m": TinyModel("wan2.2_i2v_high_noise_tiny-Q4_K_M.gguf", dm,
                                           gguf("wan22_i2v_high", "Q4_K_M")),
        "wan22_i2v_low_q4_k_m": TinyModel("wan2.2_i2v_low_noise_tiny-Q4_K_M.gguf", dm,
                                          gguf("wan22_i2v_low", "Q4_K_M")),
        "wan22_ti2v_5b_q4_k_m": TinyModel("wan2.2-ti2v-5b-tiny-Q4_K_M.gguf", dm, gguf("wan22_ti2v_5b", "Q4_K_M")),
        "wan21_lightx2v_lora": TinyModel("wan21_i2v_lightx2v_tiny_lora.safetensors", "loras",
                                         _st(lora("wan21", 21, "down_up"))),
        "wan22_lightx2v_lora_high": TinyModel("wan2.2_i2v_lightx2v_tiny_lora_high_noise.safetensors", "loras",
                                              _st(lora("wan22", 22, "down_up"))),
        "wan22_lightx2v_lora_low": TinyModel("wan2.2_i2v_lightx2v_tiny_lora_low_noise.safetensors", "loras",
                                             _st(lora("wan22", 23, "A_B"))),
    }


MODELS: dict[str, TinyModel] = {
    "wan_i2v": TinyModel("wan2.1_i2v_tiny_fp32.safetensors", "diffusion_models", _st(lambda: wan_state_dict("i2v"))),
    "wan_t2v": TinyModel("wan2.1_t2v_tiny_fp32.safetensors", "diffusion_models", _st(lambda: wan_state_dict("t2v", seed=4))),
    "wan_vae": TinyModel("wan_2.1_vae_tiny.safetensors", "vae", _st(wan_vae_state_dict)),
    "clip_vision_h": TinyModel("clip_vision_h_random.safetensors", "clip_vision", _st(clip_vision_h_state_dict)),
    "umt5_f32": TinyModel("umt5-tiny-encoder-F32.gguf", "text_encoders", lambda p: _build_umt5(p, "F32")),
    "umt5_q8_0": TinyModel("umt5-tiny-encoder-Q8_0.gguf", "text_encoders", lambda p: _build_umt5(p, "Q8_0")),
    "sdxl": TinyModel("sdxl_tiny_random.safetensors", "checkpoints", _build_sdxl),  # stage 1 (SDXL family)
    "wan_i2v_q4_k_m": TinyModel("wan2.1-i2v-tiny-Q4_K_M.gguf", "diffusion_models",
                                lambda p: _build_wan_gguf(p, "Q4_K_M")),
}
MODELS.update(_wan22_models())


def build(name: str) -> Path:
    """Path of the cached model file, building it first when missing."""
    spec = MODELS[name]
    path = cache_dir() / spec.file_name
    if not path.is_file():
        spec.build(path)
    return path


def install_into(base_dir: Path, names=None) -> dict[str, Path]:
    """Link the models into ``base_dir/models/<folder>/`` and return their link paths."""
    out = {}
    for name in names or MODELS:
        spec = MODELS[name]
        src = build(name)
        folder = Path(base_dir) / "models" / spec.folder
        folder.mkdir(parents=True, exist_ok=True)
        out[name] = link_model(src, folder / spec.file_name)
    _forget_cached_listings()
    return out


def link_model(src: Path, link: Path) -> Path:
    """Symlink ``link`` -> ``src``; a link left pointing at another cache (or at nothing) is replaced."""
    if link.is_symlink() and link.resolve() != Path(src).resolve():
        link.unlink()
    if not link.exists():
        link.symlink_to(src)
    return link


def _forget_cached_listings() -> None:
    # ComfyUI caches folder listings; new files stay hidden until it is dropped.
    import sys

    fp = sys.modules.get("folder_paths")
    if fp is not None and hasattr(fp, "filename_list_cache"):
        fp.filename_list_cache.clear()


# 256-wide rows (K-quants and IQ4_XS need whole 256-value blocks) in the tiny Wan model.
_WIDE_256 = ("blocks.0.ffn.2.weight", "blocks.1.ffn.2.weight", "time_embedding.0.weight",
             "text_embedding.0.weight", "img_emb.proj.1.weight", "img_emb.proj.3.weight")


def write_mixed_wan_gguf(src: Path, dst: Path) -> dict[str, str]:
    """The tiny Wan I2V model with every supported GGML type used by some tensor.

    Types gguf-py and this package cannot quantize (IQ4_NL, IQ4_XS) get random
    valid blocks with small scales: the loaders are compared on the same bytes,
    so the values need only be finite. Returns tensor name -> type name.
    """
    import gguf
    from safetensors.torch import load_file

    from ..gguf.ggml_types import TYPES, random_blocks
    from ..gguf.writer import stored_shape
    from ..gguf.quantize import quantize

    sd = load_file(str(src))
    wide = [t for t in TYPES.values() if t.block_size == 256]
    narrow = [t for t in TYPES.values() if t.block_size in (1, 32) and t.name != "F32"]
    plan: dict[str, str] = {}
    writer = gguf.GGUFWriter(str(dst), "wan")
    gen = torch.Generator().manual_seed(5)
    counters = {"wide": 0, "narrow": 0}

    def pick(pool, key):
        counters[key] += 1
        return pool[(counters[key] - 1) % len(pool)]

    for name in sorted(sd):
        w = sd[name].float()
        shape = stored_shape(tuple(w.shape))
        if shape != tuple(w.shape):
            writer.add_array(f"comfy.gguf.orig_shape.{name}", list(w.shape))
        if name in _WIDE_256:
            t = pick(wide, "wide")
        elif w.ndim == 2 and w.shape[1] % 32 == 0:
            t = pick(narrow, "narrow")
        else:
            writer.add_tensor(name, w.reshape(shape).numpy())
            plan[name] = "F32"
            continue
        if t.name in ("IQ4_NL", "IQ4_XS"):
            blocks = random_blocks(t.qtype, w.numel() // t.block_size, gen)
            blocks[:, 0:2] = torch.tensor([0.004], dtype=torch.float16).view(torch.uint8)
            data = blocks.numpy().reshape(w.shape[0], -1)
        else:
            data = quantize(w.numpy(), t.qtype)
        writer.add_tensor(name, data, raw_dtype=t.qtype)
        plan[name] = t.name
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return plan
