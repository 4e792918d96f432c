"""ModelPatcher for models whose weights stay GGUF-quantized (legacy path).

ComfyUI applies a LoRA by computing a new float weight and storing it in the
model. A quantized weight cannot take that without being materialised in full
precision, so for those keys the patch is attached to the layer and applied
right after per-layer dequantization (``comfy.ops``). Float weights
(F32/F16/BF16 tensors in the file) go through ComfyUI's own code.

Import only inside ComfyUI.
"""

from __future__ import annotations

import comfy.lora
import comfy.model_patcher
import comfy.utils

from ..gguf.ggml_tensor import GGMLTensor


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


def _is_packed(weight) -> bool:
    return isinstance(weight, GGMLTensor) or hasattr(weight, "_layout_cls")


def _attach(patcher, key) -> None:
    """Run ``key``'s patches on the dequantized weight, once per load."""
    module, param = _owner(patcher.model, key)
    fns = list(getattr(module, param + "_function", ()))
    if not any(getattr(f, "key", None) == key and isinstance(f, _DequantizedPatch) for f in fns):
        # A new list: comfy.ops layers share one default list at class level.
        setattr(module, param + "_function", [*fns, _DequantizedPatch(patcher, key)])


class GGUFModelPatcher(comfy.model_patcher.ModelPatcher):
    """Legacy path. Accepts both the 0.3.75 and the newest ModelPatcher signatures (``**kwargs``)."""

    def patch_weight_to_device(self, key, device_to=None, inplace_update=False, **kwargs):
        weight = comfy.utils.get_attr(self.model, key)
        if not _is_packed(weight):
            return super().patch_weight_to_device(key, device_to, inplace_update, **kwargs)
        if kwargs.get("return_weight"):
            plain = weight.dequantize(weight_dtype(self), device_to) if isinstance(weight, GGMLTensor) else weight.dequantize()
            return _DequantizedPatch(self, key)(plain)
        if key in self.patches:
            _attach(self, key)
        return None

    def unpatch_model(self, device_to=None, unpatch_weights=True, *args, **kwargs):
        if unpatch_weights:
            # 0.3.75 wipes weight functions only after lowvram loads; ours go in any case.
            for m in self.model.modules():
                for p in ("weight", "bias"):
                    fns = getattr(m, p + "_function", None)
                    if fns and any(isinstance(f, _DequantizedPatch) for f in fns):
                        setattr(m, p + "_function", [f for f in fns if not isinstance(f, _DequantizedPatch)])
        return super().unpatch_model(device_to, unpatch_weights, *args, **kwargs)

    def patch_hook_weight_to_device(self, hooks, combined_patches, key, original_weights, memory_counter):
        if _is_packed(comfy.utils.get_attr(self.model, key)):
            raise RuntimeError(
                f"TwoStage I2V: weight hooks cannot patch the GGUF-quantized weight {key}; "
                "apply the LoRA with LoraLoaderModelOnly instead"
            )
        return super().patch_hook_weight_to_device(hooks, combined_patches, key, original_weights, memory_counter)


def weight_dtype(patcher):
    import torch

    return getattr(patcher.model, "manual_cast_dtype", None) or patcher.model_dtype() or torch.float32


def as_gguf_patcher(patcher):
    """Turn a fresh patcher (no patches yet) into this package's subclass of its kind.

    ComfyUI's loaders construct the patcher class themselves; clones copy
    ``__class__``, so switching the class of the new instance carries to them.
    """
    dynamic = getattr(patcher, "is_dynamic", lambda: False)()
    cls = dynamic_patcher_class() if dynamic else GGUFModelPatcher
    if not isinstance(patcher, cls):
        patcher.__class__ = cls
    return patcher


_DYNAMIC_CLASS = None


def dynamic_patcher_class():
    """GGUFModelPatcherDynamic, defined only where ComfyUI has ModelPatcherDynamic."""
    global _DYNAMIC_CLASS
    if _DYNAMIC_CLASS is None:
        base = comfy.model_patcher.ModelPatcherDynamic

        class GGUFModelPatcherDynamic(base):
            def clone(self, *args, **kwargs):
                n = super().clone(*args, **kwargs)
                # clone(disable_dynamic=True) (torch.compile, hooks) wraps a legacy-loaded
                # model in core's ModelPatcher, which would merge LoRA into raw bytes.
                if not n.is_dynamic() and not isinstance(n, GGUFModelPatcher):
                    n.__class__ = GGUFModelPatcher
                return n

            def load(self, *args, **kwargs):
                out = super().load(*args, **kwargs)
                # Core would merge a LoRA into a packed weight and requantize it into VRAM;
                # GGML blocks have no GPU quantizer, so the patch runs per step instead.
                for m in self.model.modules():
                    if not hasattr(getattr(m, "weight", None), "_layout_cls"):
                        continue
                    for p in ("weight", "bias"):
                        fn = getattr(m, p + "_lowvram_function", None)
                        if fn is not None:
                            setattr(m, p + "_lowvram_function", None)
                            setattr(m, p + "_function", [*getattr(m, p + "_function", ()), fn])
                return out

        _DYNAMIC_CLASS = GGUFModelPatcherDynamic
    return _DYNAMIC_CLASS
