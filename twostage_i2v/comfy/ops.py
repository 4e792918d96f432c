"""ComfyUI layer ops whose weights stay GGUF-quantized.

Two weight forms, one dequantizer:
- legacy path (0.3.75, CPU, ``--disable-dynamic-vram``, non-dynamic copies):
  the layers take the state dict's tensors as they are (a ``GGMLTensor`` of
  quantized blocks, or a float tensor viewing the mapped file) without copying,
  and turn a quantized weight into the compute dtype only inside ``forward``,
  the way ``comfy.ops`` casts fp16 weights per layer. LoRA patches and lowvram
  ``weight_function``s run on the dequantized weight.
- native path (``native=True``, for ComfyUI's dynamic VRAM): 2-D quantized
  weights become comfy-kitchen ``QuantizedTensor``s with this package's GGML
  layout and the layer defers to core ``comfy.ops``, which streams and casts
  them; other quantized tensors (a tiny share) are dequantized at load.

Import only inside ComfyUI.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..gguf.ggml_tensor import GGMLTensor, materialize

_OPS_CACHE: dict = {}


class GGMLLayer:
    """Mixin for a comfy.ops layer class; ``ggml_native`` is set per ops family."""

    ggml_native = False
    # Set at load: a plain bool, because torch.compile's tracer cannot take isinstance()
    # on a Parameter holding a tensor subclass (it recurses).
    ggml_packed = False

    def _ggml_dtype(self, name):
        return getattr(self, f"{name}_comfy_model_dtype", None) or torch.float32

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        for name in ("weight", "bias"):
            key = prefix + name
            if key in state_dict:
                value = state_dict[key]
                if self.ggml_native:
                    value = self._ggml_native_param(name, value)
                # Assign, never copy: the tensor is a view of the mapped file.
                setattr(self, name, torch.nn.Parameter(value, requires_grad=False))
                self.ggml_packed = self.ggml_packed or isinstance(value, GGMLTensor)
            elif getattr(self, name, None) is not None or (name == "bias" and getattr(self, "comfy_need_lazy_init_bias", False)):
                missing_keys.append(key)
        for key in state_dict:
            if key.startswith(prefix) and key[len(prefix):] not in ("weight", "bias") and "." not in key[len(prefix):]:
                unexpected_keys.append(key)

    def _ggml_native_param(self, name, value):
        from .layout import to_quantized_tensor

        dtype = self._ggml_dtype(name)
        if isinstance(value, GGMLTensor):
            if name == "weight" and isinstance(self, torch.nn.Linear) and len(value.ggml_shape) == 2:
                return to_quantized_tensor(value, dtype)
            return value.dequantize(dtype)
        # Same dtype as the weight's compute dtype, or core casts the whole module twice per step.
        return value.to(dtype) if value.is_floating_point() else value

    def _ggml_needed(self) -> bool:
        if self.ggml_native:
            return False  # core comfy.ops streams and casts packed weights itself
        return (
            self.ggml_packed
            or bool(getattr(self, "weight_function", None))
            or bool(getattr(self, "bias_function", None))
        )

    def convert_weight(self, weight, inplace=False, **kwargs):
        # 0.3.75's lowvram patch calls this on the cast weight; a packed one is dequantized.
        return weight.dequantize() if hasattr(weight, "_layout_cls") else weight

    # torch.compile (TorchCompileModel) compiles around this: dequantization stays eager
    # and exact, the layer's math and everything between layers is compiled.
    @torch.compiler.disable
    def ggml_weight_bias(self, dtype, device):
        weight = materialize(self.weight, dtype, device)
        for fn in getattr(self, "weight_function", ()):
            weight = fn(weight)
        bias = None
        if getattr(self, "bias", None) is not None:
            bias = materialize(self.bias, dtype, device)
            for fn in getattr(self, "bias_function", ()):
                bias = fn(bias)
        return weight, bias


def _make_layers(base):
    class Linear(GGMLLayer, base.Linear):
        def __init__(self, in_features, out_features, bias=True, device=None, dtype=None):
            # Overriding _load_from_state_dict turns off core's lazy init: without this every
            # Linear would first allocate an empty full-precision weight (28 GB for 14B).
            torch.nn.Module.__init__(self)
            self.in_features, self.out_features = in_features, out_features
            self.weight = None
            self.bias = None
            self.comfy_need_lazy_init_bias = bias
            self.weight_comfy_model_dtype = dtype
            self.bias_comfy_model_dtype = dtype

        def forward(self, input, *args, **kwargs):
            if not self._ggml_needed():
                return super().forward(input, *args, **kwargs)
            weight, bias = self.ggml_weight_bias(input.dtype, input.device)
            return F.linear(input, weight, bias)

    def conv(cls):
        class Conv(GGMLLayer, cls):
            def forward(self, input, *args, **kwargs):
                if not self._ggml_needed():
                    return super().forward(input, *args, **kwargs)
                weight, bias = self.ggml_weight_bias(input.dtype, input.device)
                return self._conv_forward(input, weight, bias)

        Conv.__name__ = cls.__name__
        return Conv

    class Embedding(GGMLLayer, base.Embedding):
        def forward(self, input, out_dtype=None, *args, **kwargs):
            if not self._ggml_needed():
                return super().forward(input, out_dtype=out_dtype, *args, **kwargs)
            return self._ggml_embedding(input, out_dtype or torch.float32)

        @torch.compiler.disable
        def _ggml_embedding(self, input, dtype):
            w = self.weight
            if isinstance(w, GGMLTensor) and not self.weight_function:
                # Dequantize only the rows looked up: a quantized row is whole blocks.
                rows = w.raw.view(w.ggml_shape[0], -1)
                ids = input.reshape(-1).to(rows.device)
                picked = GGMLTensor(rows.index_select(0, ids), w.ggml_type, (ids.numel(), w.ggml_shape[1]))
                out = picked.dequantize(dtype, input.device)
                return out.reshape(*input.shape, w.ggml_shape[1])
            weight, _ = self.ggml_weight_bias(dtype, input.device)
            return F.embedding(input, weight, self.padding_idx, self.max_norm, self.norm_type,
                               self.scale_grad_by_freq, self.sparse)

    class LayerNorm(GGMLLayer, base.LayerNorm):
        def forward(self, input, *args, **kwargs):
            if not self._ggml_needed() or self.weight is None:
                return super().forward(input, *args, **kwargs)
            weight, bias = self.ggml_weight_bias(input.dtype, input.device)
            return F.layer_norm(input, self.normalized_shape, weight, bias, self.eps)

    class RMSNorm(GGMLLayer, base.RMSNorm):
        def forward(self, input, *args, **kwargs):
            if not self._ggml_needed() or self.weight is None:
                return super().forward(input, *args, **kwargs)
            weight, _ = self.ggml_weight_bias(input.dtype, input.device)
            return F.rms_norm(input, self.normalized_shape, weight, self.eps)

    class GroupNorm(GGMLLayer, base.GroupNorm):
        def forward(self, input, *args, **kwargs):
            if not self._ggml_needed() or self.weight is None:
                return super().forward(input, *args, **kwargs)
            weight, bias = self.ggml_weight_bias(input.dtype, input.device)
            return F.group_norm(input, self.num_groups, weight, bias, self.eps)

    layers = dict(Linear=Linear, Embedding=Embedding, LayerNorm=LayerNorm, RMSNorm=RMSNorm, GroupNorm=GroupNorm)
    for name in ("Conv1d", "Conv2d", "Conv3d"):
        if hasattr(base, name):
            layers[name] = conv(getattr(base, name))
    return layers


def ggml_ops(base=None, native: bool = False):
    """A comfy.ops-style class (``custom_operations``) built on ``base`` (manual_cast by default)."""
    import comfy.ops

    base = base or comfy.ops.manual_cast
    key = (base, native)
    if key not in _OPS_CACHE:
        layers = {name: type(name, (cls,), {"ggml_native": native}) for name, cls in _make_layers(base).items()}
        _OPS_CACHE[key] = type("GGMLNativeOps" if native else "GGMLOps", (base,), layers)
    return _OPS_CACHE[key]
