"""GGUF blocks as comfy-kitchen ``QuantizedTensor``s (the dynamic-VRAM path).

Newer ComfyUI streams weights through shared VRAM buffers and rebuilds every
tensor there; only comfy-kitchen's ``QuantizedTensor`` keeps its type on that
trip (it flattens to its raw storage and unflattens from its params). So under
dynamic VRAM a GGUF weight becomes a ``QuantizedTensor`` whose storage is the
file's blocks and whose layout, registered with comfy-kitchen, dequantizes
with this package's one dequantizer. The layout name is global across custom
node packages, hence the prefix.

Import only inside ComfyUI, and only after ``native_qt_available()``.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from comfy_kitchen.tensor import (
    BaseLayoutParams,
    QuantizedLayout,
    QuantizedTensor,
    register_layout_class,
    register_layout_op,
)

from ..gguf.dequant import dequantize
from ..gguf.ggml_tensor import GGMLTensor

LAYOUT = "TwoStageI2V_GGML"


@dataclasses.dataclass(frozen=True)
class GGMLParams(BaseLayoutParams):
    qtype: int = 0

    def _tensor_fields(self):
        # The blocks carry their own scales: nothing beside the data to move or copy.
        return []


class GGMLLayout(QuantizedLayout):
    Params = GGMLParams

    @classmethod
    def quantize(cls, tensor, **kwargs):
        # ComfyUI requantizes a LoRA-merged weight only for modules that keep a
        # lowvram patch; GGUFModelPatcherDynamic moves those to per-step functions.
        raise NotImplementedError(
            "TwoStage I2V: GGUF weights are never requantized; LoRA patches are applied after dequantization"
        )

    @classmethod
    def dequantize(cls, qdata, params):
        return dequantize(qdata, params.qtype, params.orig_shape, params.orig_dtype)

    @classmethod
    def get_plain_tensors(cls, qtensor):
        return (qtensor._qdata,)

    @classmethod
    def state_dict_tensors(cls, qdata, params):
        return {"": qdata}


register_layout_class(LAYOUT, GGMLLayout)


def _plain(t, dtype=None):
    if isinstance(t, QuantizedTensor):
        t = t.dequantize()
    return t if t is None or dtype is None else t.to(dtype)


@register_layout_op(torch.ops.aten.linear.default, GGMLLayout)
def _linear(_first, args, kwargs):
    # Under inference mode F.linear reaches here whole; outside it, torch splits it
    # into t/mm/addmm, which comfy-kitchen's dequantize-and-run fallback covers.
    x = _plain(args[0])
    weight = _plain(args[1], x.dtype)
    bias = args[2] if len(args) > 2 else kwargs.get("bias")
    return F.linear(x, weight, _plain(bias, x.dtype))


def to_quantized_tensor(g: GGMLTensor, dtype: torch.dtype) -> QuantizedTensor:
    """Wrap a GGMLTensor's blocks without copying; ``dtype`` is the compute dtype."""
    params = GGMLParams(scale=None, orig_dtype=dtype, orig_shape=tuple(g.ggml_shape), qtype=g.ggml_type)
    return QuantizedTensor(g.raw.reshape(g.ggml_shape[0], -1), LAYOUT, params)


def retarget_dtype(qt: QuantizedTensor, dtype: torch.dtype) -> None:
    """Make ``qt`` dequantize straight into ``dtype`` (no clone of the blocks)."""
    qt._params = dataclasses.replace(qt._params, orig_dtype=dtype)


def is_ggml_qt(t) -> bool:
    return isinstance(t, QuantizedTensor) and getattr(t, "_layout_cls", None) == LAYOUT
