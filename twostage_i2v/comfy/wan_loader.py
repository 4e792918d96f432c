"""Build a ComfyUI MODEL from a Wan I2V GGUF (2.1 I2V, a 2.2 A14B expert, 2.2 TI2V 5B) whose weights stay quantized.

Two load paths, one dequantizer (``gguf.dequant``):
- dynamic: ComfyUI's dynamic VRAM is on (newest ComfyUI on a GPU): weights
  become comfy-kitchen QuantizedTensors with the GGML layout, core ops and
  ``ModelPatcherDynamic`` (subclassed) stream them;
- legacy: everything else: GGMLTensor weights, custom ops that dequantize per
  layer, ``ModelPatcher`` (subclassed).

Import only inside ComfyUI.
"""

from __future__ import annotations

import logging

import comfy.model_management as mm
import comfy.sd

from .features import accepts, dynamic_wanted
from .ops import ggml_ops
from .patcher import as_gguf_patcher
from ..models.wan_file import WrongModelError, open_wan_i2v

log = logging.getLogger("twostage_i2v")

# model_options key: "auto" (default), "legacy" or "native" (packed QuantizedTensors
# even without dynamic VRAM: how the tests check the layout path on a CPU).
WEIGHT_PATH_OPTION = "twostage_weight_path"


def _wants_native(options: dict, disable_dynamic: bool) -> bool:
    choice = options.get(WEIGHT_PATH_OPTION, "auto")
    if choice == "native":
        from .features import native_qt_available

        if not native_qt_available():
            raise RuntimeError("this ComfyUI has no comfy-kitchen QuantizedTensor layouts: use the legacy path")
        return True
    if choice == "legacy":
        return False
    return dynamic_wanted(options.get("load_device", mm.get_torch_device()), disable_dynamic)


def load_wan_i2v(path, model_options: dict | None = None, disable_dynamic: bool = False):
    """The factory both for the node and for ComfyUI's ``cached_patcher_init``
    (which calls it with ``disable_dynamic=True`` for torch.compile and hooks)."""
    f, kind, sd = open_wan_i2v(path)
    options = dict(model_options or {})
    native = _wants_native(options, disable_dynamic)
    build = {k: v for k, v in options.items() if k != WEIGHT_PATH_OPTION}
    build["custom_operations"] = ggml_ops(native=native)
    kwargs = {}
    if accepts(comfy.sd.load_diffusion_model_state_dict, "disable_dynamic"):
        kwargs["disable_dynamic"] = not native or disable_dynamic
    patcher = comfy.sd.load_diffusion_model_state_dict(sd, model_options=build, **kwargs)
    if patcher is None:
        raise WrongModelError(f"{f.path.name}: ComfyUI did not recognise this Wan model's layout ({kind.describe()})")
    if native:
        _retarget_compute_dtype(patcher)
    patcher = as_gguf_patcher(patcher)
    # Lets core rebuild the model when it needs a fresh non-dynamic copy.
    patcher.cached_patcher_init = (load_wan_i2v, (str(path), dict(model_options or {})))
    dynamic = getattr(patcher, "is_dynamic", lambda: False)()
    log.info(
        "TwoStage I2V: loaded %s (%s); weights stay quantized, %s",
        f.path.name, kind.describe(),
        "packed for dynamic VRAM" if dynamic else ("packed QuantizedTensors" if native else "dequantized per layer"),
    )
    return patcher


def _retarget_compute_dtype(patcher) -> None:
    """Packed weights dequantize straight into the dtype the model computes in."""
    from .layout import is_ggml_qt, retarget_dtype

    model = patcher.model
    compute = getattr(model, "manual_cast_dtype", None) or model.get_dtype()
    for m in model.diffusion_model.modules():
        w = getattr(m, "weight", None)
        if is_ggml_qt(w) and w.dtype != compute:
            retarget_dtype(w, compute)
            b = getattr(m, "bias", None)
            if b is not None and b.dtype != compute:
                m.bias = type(b)(b.to(compute), requires_grad=False)
            m.bias_comfy_model_dtype = compute
