"""ModelPatcher for models whose weights stay GGUF-quantized (legacy path).

ComfyUI applies a LoRA by computing a new float weight and storing it in the
model. A quantized weight cannot take that without being materialised in full
precision, so for those keys the patch is attached to the layer and applied
right after per-layer dequantization (``comfy_ggml_ops``). Float weights
(F32/F16/BF16 tensors in the file) go through ComfyUI's own code.

Import only inside ComfyUI.
"""

from __future__ import annotations

import comfy.lora
import comfy.model_patcher
import comfy.utils

from .ggml_tensor import GGMLTensor


class _DequantizedPatch:
    """Applies ComfyUI's patch list for ``key`` to a dequantized weight."""

    def __init__(self, patcher, key):
        self.patcher, self.key = patcher, key

    def __call__(self, weight):
        patches = self.patcher.patches.get(self.key)
        if not patches:
            return weight
        return comfy.lora.calculate_weight(patches, weight, self.key, intermediate_dtype=weight.dtype)


def _owner(model, key):
    module_path, _, param = key.rpartition(".")
    return comfy.utils.get_attr(model, module_path), param


class GGUFModelPatcher(comfy.model_patcher.ModelPatcher):
    """Accepts both the 0.3.75 and the newest ModelPatcher signatures (``**kwargs``)."""

    def patch_weight_to_device(self, key, device_to=None, inplace_update=False, **kwargs):
        weight = comfy.utils.get_attr(self.model, key)
        if not isinstance(weight, GGMLTensor):
            return super().patch_weight_to_device(key, device_to, inplace_update, **kwargs)
        if kwargs.get("return_weight"):
            patched = weight.dequantize(weight_dtype(self), device_to)
            return _DequantizedPatch(self, key)(patched) if key in self.patches else patched
        if key in self.patches:
            module, param = _owner(self.model, key)
            patches = getattr(module, "ggml_patches", None)
            if patches is None:
                patches = module.ggml_patches = {}
            if not any(p.key == key for p in patches.get(param, ())):
                patches.setdefault(param, []).append(_DequantizedPatch(self, key))
        return None

    def unpatch_model(self, device_to=None, unpatch_weights=True, *args, **kwargs):
        if unpatch_weights:
            for module in self.model.modules():
                if getattr(module, "ggml_patches", None):
                    module.ggml_patches = {}
        return super().unpatch_model(device_to, unpatch_weights, *args, **kwargs)


def weight_dtype(patcher):
    import torch

    return getattr(patcher.model, "manual_cast_dtype", None) or patcher.model_dtype() or torch.float32


def as_gguf_patcher(patcher) -> GGUFModelPatcher:
    """Turn a fresh ModelPatcher (no patches yet) into a GGUFModelPatcher.

    ComfyUI's loaders construct the patcher class themselves; its clones copy
    ``__class__``, so switching the class of the new instance carries to them.
    """
    if not isinstance(patcher, GGUFModelPatcher):
        patcher.__class__ = GGUFModelPatcher
    return patcher
