"""Build a ComfyUI MODEL from a Wan 2.1 I2V GGUF whose weights stay quantized.

Import only inside ComfyUI.
"""

from __future__ import annotations

import inspect
import logging

import comfy.sd

from .comfy_ggml_ops import ggml_ops
from .comfy_gguf_patcher import as_gguf_patcher
from .wan_gguf import WrongModelError, open_wan_i2v

log = logging.getLogger("twostage_i2v")


def _accepts(fn, name: str) -> bool:
    return name in inspect.signature(fn).parameters


def load_wan_i2v_legacy(path, model_options: dict | None = None, disable_dynamic: bool = True):
    """Per-layer dequantization in custom ops, ComfyUI's classic ModelPatcher.

    ``disable_dynamic`` is accepted (and ignored) so that this function can be
    ComfyUI's ``cached_patcher_init`` factory, which passes it.
    """
    f, kind, sd = open_wan_i2v(path)
    options = dict(model_options or {})
    options["custom_operations"] = ggml_ops()
    kwargs = {}
    if _accepts(comfy.sd.load_diffusion_model_state_dict, "disable_dynamic"):
        kwargs["disable_dynamic"] = True  # our layers are not comfy-kitchen QuantizedTensors
    patcher = comfy.sd.load_diffusion_model_state_dict(sd, model_options=options, **kwargs)
    if patcher is None:
        raise WrongModelError(f"{f.path.name}: ComfyUI did not recognise this Wan model's layout ({kind.describe()})")
    patcher = as_gguf_patcher(patcher)
    # Lets core rebuild the model when it needs a fresh non-dynamic copy.
    patcher.cached_patcher_init = (load_wan_i2v_legacy, (str(path), model_options or {}))
    log.info("TwoStage I2V: loaded %s as %s, quantized weights kept (%s)", f.path.name, kind.describe(), "legacy path")
    return patcher


def load_wan_i2v(path, model_options: dict | None = None):
    return load_wan_i2v_legacy(path, model_options)
