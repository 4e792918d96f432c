"""Build ComfyUI's Wan text encoder (a ``CLIP`` on the umt5 path) from a GGUF file.

The CLIP is ComfyUI's own: ``comfy.text_encoders.wan`` model and tokenizer
classes, sized by ``model_options["umt5xxl_model_config"]`` (sd1_clip's
``{model_name}_model_config`` override), with ComfyUI's ModelPatcher doing
load/offload. So tokenization, 512-token padding, the attention mask and
zeroed padding rows are exactly the stock umt5 behaviour.

Import only inside ComfyUI; ComfyUI modules are imported inside functions.
"""

from __future__ import annotations

import inspect
import logging

import torch

from ..gguf.dequant import dequantize
from ..models.umt5_file import UMT5GGUF, describe_config, open_umt5_gguf, parameter_count

log = logging.getLogger("twostage_i2v")


def _comfy_state_dict(gguf_file: UMT5GGUF, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """The file's tensors under ComfyUI's umt5 names (``shared.weight``, ``encoder.block.N...``).

    For now every tensor is dequantized to ``dtype``; the GGUF weight glue
    replaces this with tensors that stay quantized (see ``_model_options``).
    """
    tensors = gguf_file.file.tensors
    return {new: dequantize(tensors[old].data, tensors[old].qtype, tensors[old].shape, dtype) for old, new in gguf_file.names.items()}


def _model_options(config: dict, device: str = "default") -> dict:
    """The one place the CLIP's model_options are assembled."""
    options: dict = {"umt5xxl_model_config": dict(config)}
    if device == "cpu":
        options["load_device"] = options["offload_device"] = torch.device("cpu")
    # Quantized weights: add options["custom_operations"] (per-layer dequantizing
    # ops) here and make _comfy_state_dict keep GGUF tensors quantized.
    return options


def _accepts(fn, name: str) -> bool:
    return name in inspect.signature(fn).parameters


def _wan_target():
    import comfy.text_encoders.wan

    class Target:
        params: dict = {}
        clip = comfy.text_encoders.wan.te()
        tokenizer = comfy.text_encoders.wan.WanT5Tokenizer

    return Target()


def build_clip(state_dict: dict, spm_proto: bytes, model_options: dict, parameters: int = 0,
               embedding_directory=None, disable_dynamic: bool = False):
    """A comfy.sd.CLIP on Wan's umt5 path holding ``state_dict`` (ComfyUI names)."""
    import comfy.sd

    kwargs = {}
    # 0.30.0 loads weights inside CLIP.__init__ (before first device placement)
    # and knows dynamic VRAM; 0.3.75 has neither argument.
    loads_in_init = _accepts(comfy.sd.CLIP.__init__, "state_dict")
    if loads_in_init:
        kwargs["state_dict"] = [state_dict]
    if _accepts(comfy.sd.CLIP.__init__, "disable_dynamic"):
        kwargs["disable_dynamic"] = disable_dynamic
    clip = comfy.sd.CLIP(
        _wan_target(),
        embedding_directory=embedding_directory,
        tokenizer_data={"spiece_model": spm_proto},
        parameters=parameters,
        model_options=model_options,
        **kwargs,
    )
    if not loads_in_init:
        missing, _unexpected = clip.load_sd(state_dict)
        if missing:
            raise RuntimeError(f"ComfyUI's umt5 model did not receive {', '.join(missing[:5])}: report this as a bug")
    return clip


def _text_encoder_dtype(model_options: dict) -> torch.dtype:
    import comfy.model_management as mm

    if model_options.get("dtype") is not None:
        return model_options["dtype"]
    return mm.text_encoder_dtype(model_options.get("load_device", mm.text_encoder_device()))


def load_wan_text_encoder(path, device: str = "default", embedding_directory=None, tokenizer_folders=(),
                          disable_dynamic: bool = False):
    """Load a umt5 encoder GGUF as a ComfyUI CLIP for CLIPTextEncode and Wan's nodes.

    Refuses (ValueError subclasses from ``models.umt5_file``/``gguf.reader``) anything
    that is not a umt5 encoder, before ComfyUI builds a model.
    """
    u = open_umt5_gguf(path, tokenizer_folders)
    options = _model_options(u.config, device)
    # Weights go straight to the dtype ComfyUI will hold them in (no float32 copy of a 5.7B model).
    sd = _comfy_state_dict(u, _text_encoder_dtype(options))
    clip = build_clip(sd, u.spm_proto, options, parameter_count(u.config), embedding_directory, disable_dynamic)
    # Lets ComfyUI rebuild this encoder when it needs a fresh non-dynamic copy (0.30.0).
    clip.patcher.cached_patcher_init = (
        _load_patcher,
        (str(u.path), device, embedding_directory, tuple(str(f) for f in tokenizer_folders)),
    )
    log.info("TwoStage I2V: loaded %s as a umt5 text encoder (%s; tokenizer from %s)",
             u.path.name, describe_config(u.config), u.tokenizer_source)
    return clip


def _load_patcher(path, device="default", embedding_directory=None, tokenizer_folders=(), disable_dynamic=False):
    return load_wan_text_encoder(path, device, embedding_directory, tokenizer_folders, disable_dynamic).patcher
