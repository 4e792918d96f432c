"""A small random-weight SDXL-family checkpoint for stage 1 (tests and the demo).

``CheckpointLoaderSimple`` detects a UNet by matching a handful of config keys
against ``comfy.supported_models`` (model_channels, use_linear_in_transformer,
input transformer_depth, context_dim, adm_in_channels, use_temporal_attention),
then builds the model from everything it read off the weights. The smallest
match in both supported trees is ``KOALA_700M`` (input transformer_depth
[0, 2, 5]: one res block per level); the keys it does not match (channel_mult,
output and middle transformer depths) are free, so the UNet here keeps 320
channels at every level, no output transformers and no middle block: about
30 M parameters instead of 700 M.

CLIP-L and CLIP-G are built from fixed JSON configs (about 0.8 B parameters
together) and the VAE from a fixed config in 0.3.75 (base width 128): those
keep their real sizes. Everything is built with ComfyUI's own classes on the
meta device, converted to checkpoint key names by the model config's own
``process_*_for_saving`` functions, then filled with seeded random values.
Needs ComfyUI imported (see headless.inprocess).
"""

from __future__ import annotations

import torch

from .models import randomise, save_safetensors

# What detect_unet_config would report for the tiny UNet (see module docstring).
UNET_CONFIG = {
    "use_checkpoint": False,
    "image_size": 32,
    "use_spatial_transformer": True,
    "legacy": False,
    "num_classes": "sequential",
    "adm_in_channels": 2816,
    "in_channels": 4,
    "out_channels": 4,
    "model_channels": 320,
    "num_res_blocks": [1, 1, 1],
    "transformer_depth": [0, 2, 5],
    "transformer_depth_output": [0, 0, 0, 0, 0, 0],
    "channel_mult": [1, 1, 1],
    "transformer_depth_middle": -2,
    "use_linear_in_transformer": True,
    "context_dim": 2048,
    "use_temporal_resblock": False,
    "use_temporal_attention": False,
}
EXPECTED_MODEL_CONFIG = "KOALA_700M"

# ComfyUI's default SD / SDXL VAE (comfy.sd.VAE picks it by key names).
VAE_DDCONFIG = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}


def model_config():
    """The supported-model config ComfyUI picks for the tiny UNet (checked, not assumed)."""
    import comfy.model_detection

    cfg = comfy.model_detection.model_config_from_unet_config(dict(UNET_CONFIG))
    name = type(cfg).__name__ if cfg is not None else None
    if name != EXPECTED_MODEL_CONFIG:
        raise RuntimeError(f"tiny SDXL: ComfyUI matched the UNet config to {name}, expected {EXPECTED_MODEL_CONFIG}; "
                           "this ComfyUI changed its SDXL detection")
    return cfg


def checkpoint_shapes() -> dict[str, tuple]:
    """Checkpoint key -> shape, with the key names CheckpointLoaderSimple reads."""
    import comfy.ldm.models.autoencoder
    import comfy.ldm.modules.diffusionmodules.openaimodel as openaimodel
    import comfy.ops
    import comfy.sdxl_clip

    cfg = model_config()
    unet_kwargs = dict(cfg.unet_config)
    unet_kwargs.pop("dtype", None)
    with torch.device("meta"):
        unet = openaimodel.UNetModel(**unet_kwargs, device="meta", operations=comfy.ops.disable_weight_init)
        clip = comfy.sdxl_clip.SDXLClipModel(device="meta", dtype=torch.float32)
        vae = comfy.ldm.models.autoencoder.AutoencoderKL(ddconfig=VAE_DDCONFIG, embed_dim=4)
    meta = {}
    # process_* work on tensors (the CLIP-G conversion concatenates q, k, v): feed meta tensors.
    meta.update(cfg.process_unet_state_dict_for_saving(unet.state_dict()))
    meta.update(cfg.process_clip_state_dict_for_saving(clip.state_dict()))
    meta.update(cfg.process_vae_state_dict_for_saving(vae.state_dict()))
    return {k: tuple(v.shape) for k, v in meta.items() if v.numel() > 0 or v.ndim > 0}


def write_tiny_sdxl(path, seed: int = 11, dtype=torch.float16) -> dict[str, tuple]:
    """Write the checkpoint (fp16 on disk: ComfyUI casts to fp32 on a CPU; half the file)."""
    shapes = checkpoint_shapes()
    # Integer buffers (CLIP position ids) are not weights: ComfyUI rebuilds them.
    shapes = {k: s for k, s in shapes.items() if not k.endswith("position_ids")}
    save_safetensors(randomise(shapes, seed, dtype=dtype), path,
                     "tiny random SDXL-family (KOALA_700M-detected) checkpoint")
    return shapes
