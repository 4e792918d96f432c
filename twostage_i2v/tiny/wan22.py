"""Small random Wan 2.2 models and speed LoRAs, built with ComfyUI's own classes.

- The two I2V A14B experts: Wan 2.1's architecture without the CLIP-vision
  branch (``model_type "t2v"``, 36 input channels), tiny widths, one seed each.
- A TI2V-5B-shaped model: 48 input and 48 output channels (the Wan 2.2 VAE's
  latent), tiny widths.
- The Wan 2.2 VAE at its real width: ComfyUI's VAE loader builds it from a
  fixed configuration (``dim`` 160, 48 latent channels), so no narrower one
  loads through the core ``VAELoader``. About 705 M parameters, stored in fp16
  (1.4 GB) as ComfyUI casts on load.
- LoRAs in the lightx2v speed-LoRA key layout (``diffusion_model.blocks.N.<layer>``
  with ``lora_down``/``lora_up`` and ``alpha``, or ``lora_A``/``lora_B``, plus
  ``.diff`` on norm weights and ``.diff_b`` on biases), for a given model's shapes.

``tiny.models.MODELS`` lists them; needs ComfyUI imported.
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import models as tiny

WAN22_5B_TINY = dict(tiny.WAN_TINY, out_dim=48)
EXPERT_SEEDS = {"high_noise": 11, "low_noise": 12}
LORA_RANK = 4
# Per block: the linear layers a lightx2v LoRA carries, and the norm weights it replaces with .diff.
_LORA_LINEARS = ("self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o",
                 "cross_attn.q", "cross_attn.k", "cross_attn.v", "cross_attn.o", "ffn.0", "ffn.2")
_LORA_LINEARS_I2V = ("cross_attn.k_img", "cross_attn.v_img")  # Wan 2.1 I2V only
_LORA_NORMS = ("norm3", "self_attn.norm_q", "self_attn.norm_k", "cross_attn.norm_q", "cross_attn.norm_k")


def wan22_shapes(kind: str = "i2v") -> dict[str, tuple]:
    """Tensor name -> shape of a tiny Wan 2.2 model: ``"i2v"`` (an A14B expert) or ``"ti2v"`` (5B-shaped)."""
    import comfy.ldm.wan.model
    import comfy.ops

    config = WAN22_5B_TINY if kind == "ti2v" else tiny.WAN_TINY
    in_dim = 48 if kind == "ti2v" else 36
    with torch.device("meta"):
        model = comfy.ldm.wan.model.WanModel(model_type="t2v", in_dim=in_dim, operations=comfy.ops.manual_cast,
                                             **config)
    return tiny._meta_shapes(model)


def expert_state_dict(expert: str) -> dict[str, torch.Tensor]:
    """One tiny Wan 2.2 I2V A14B expert; the two differ only in their random weights, as the real ones
    differ only in their trained ones."""
    return tiny.randomise(wan22_shapes("i2v"), EXPERT_SEEDS[expert])


def ti2v_state_dict(seed: int = 13) -> dict[str, torch.Tensor]:
    return tiny.randomise(wan22_shapes("ti2v"), seed)


def vae_state_dict(seed: int = 14) -> dict[str, torch.Tensor]:
    """The Wan 2.2 VAE at the configuration ComfyUI's VAE loader builds for it (comfy/sd.py)."""
    import comfy.ldm.wan.vae2_2

    with torch.device("meta"):
        model = comfy.ldm.wan.vae2_2.WanVAE(dim=160, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                                            attn_scales=[], temperal_downsample=[False, True, True], dropout=0.0)
    return tiny.randomise(tiny._meta_shapes(model), seed, dtype=torch.float16)


def lightx2v_lora(shapes: dict[str, tuple], seed: int, style: str = "down_up",
                  rank: int = LORA_RANK) -> dict[str, torch.Tensor]:
    """A LoRA for the model of ``shapes`` (ComfyUI names), in the lightx2v key layout.

    ``style``: ``"down_up"`` (``lora_down``/``lora_up``) or ``"A_B"`` (``lora_A``/``lora_B``).
    Every block's linear layers get a rank-``rank`` pair, an ``alpha`` and a ``.diff_b`` bias
    delta; the norm weights get a full ``.diff``. Scaled so the LoRA visibly changes the output."""
    gen = torch.Generator().manual_seed(seed)
    blocks = sorted({int(k.split(".")[1]) for k in shapes if k.startswith("blocks.")})
    out: dict[str, torch.Tensor] = {}
    linears = _LORA_LINEARS + (_LORA_LINEARS_I2V if "blocks.0.cross_attn.k_img.weight" in shapes else ())
    for n in blocks:
        for layer in linears:
            name = f"blocks.{n}.{layer}"
            out_f, in_f = shapes[f"{name}.weight"]
            down = torch.randn(rank, in_f, generator=gen) / in_f ** 0.5
            up = torch.randn(out_f, rank, generator=gen) * 0.5
            key = f"diffusion_model.{name}"
            if style == "A_B":
                out[f"{key}.lora_A.weight"], out[f"{key}.lora_B.weight"] = down, up
            else:
                out[f"{key}.lora_down.weight"], out[f"{key}.lora_up.weight"] = down, up
            out[f"{key}.alpha"] = torch.tensor(float(rank))
            out[f"{key}.diff_b"] = 0.02 * torch.randn(out_f, generator=gen)
        for norm in _LORA_NORMS:
            name = f"blocks.{n}.{norm}.weight"
            if name in shapes:
                out[f"diffusion_model.blocks.{n}.{norm}.diff"] = 0.05 * torch.randn(shapes[name], generator=gen)
    return {k: v.contiguous() for k, v in out.items()}


def write_expert_gguf(path: Path, source: str, recipe: str) -> None:
    """A tiny model (``tiny.MODELS`` key) converted with the package's own writer."""
    from safetensors.torch import load_file

    from ..models.kind import expert_metadata
    from ..models.wan_convert import write_model_gguf

    src = tiny.build(source)
    tmp = path.with_name(path.name + ".part")
    # As the convert verb does: the expert a source file names is kept in the metadata.
    write_model_gguf(tmp, load_file(str(src)), recipe, metadata=expert_metadata(src.name), force=True)
    tmp.replace(path)
