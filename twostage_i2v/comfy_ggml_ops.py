"""ComfyUI layer ops whose weights may stay GGUF-quantized (the legacy path).

The layers take whatever the state dict holds (a ``GGMLTensor`` of quantized
blocks, or a plain float tensor viewing the mapped file) without copying, and
turn a quantized weight into the compute dtype only inside ``forward``, the
way ``comfy.ops`` casts fp16 weights per layer. LoRA patches that ComfyUI
would bake into a float weight are applied after dequantization instead
(see ``comfy_gguf_patcher``), and lowvram ``weight_function``s run as usual.

Import only inside ComfyUI.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .ggml_tensor import GGMLTensor, materialize

_OPS_CACHE: dict = {}


class GGMLLayer:
    """Mixin for a comfy.ops layer class."""

    # param name -> callables applied to the dequantized weight (LoRA on quantized weights)
    ggml_patches: dict

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        for name in ("weight", "bias"):
            key = prefix + name
            if key in state_dict:
                # Assign, never copy: the tensor is a view of the mapped file.
                setattr(self, name, torch.nn.Parameter(state_dict[key], requires_grad=False))
            elif getattr(self, name, None) is not None:
                missing_keys.append(key)
        for key in state_dict:
            if key.startswith(prefix) and key[len(prefix):] not in ("weight", "bias") and "." not in key[len(prefix):]:
                unexpected_keys.append(key)

    def _ggml_needed(self) -> bool:
        return (
            isinstance(self.weight, GGMLTensor)
            or bool(getattr(self, "ggml_patches", None))
            or bool(getattr(self, "weight_function", None))
            or bool(getattr(self, "bias_function", None))
        )

    def ggml_weight_bias(self, dtype, device):
        weight = materialize(self.weight, dtype, device)
        for fn in getattr(self, "ggml_patches", {}).get("weight", ()):
            weight = fn(weight)
        for fn in getattr(self, "weight_function", ()):
            weight = fn(weight)
        bias = None
        if getattr(self, "bias", None) is not None:
            bias = materialize(self.bias, dtype, device)
            for fn in getattr(self, "ggml_patches", {}).get("bias", ()):
                bias = fn(bias)
            for fn in getattr(self, "bias_function", ()):
                bias = fn(bias)
        return weight, bias


def _make_layers(base):
    class Linear(GGMLLayer, base.Linear):
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
            dtype = out_dtype or torch.float32
            w = self.weight
            if isinstance(w, GGMLTensor) and not getattr(self, "ggml_patches", None) and not self.weight_function:
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


def ggml_ops(base=None):
    """A comfy.ops-style class (``custom_operations``) built on ``base`` (manual_cast by default)."""
    import comfy.ops

    base = base or comfy.ops.manual_cast
    if base not in _OPS_CACHE:
        _OPS_CACHE[base] = type("GGMLOps", (base,), _make_layers(base))
    return _OPS_CACHE[base]
