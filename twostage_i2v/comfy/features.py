"""What the running ComfyUI can do, found by looking (never by version numbers).

Read at load time, not import time: ComfyUI's main.py switches dynamic VRAM on
after custom nodes may have been imported.
"""

from __future__ import annotations

import inspect


def accepts(fn, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def native_qt_available() -> bool:
    """comfy-kitchen QuantizedTensor layouts and the buffer code that keeps them packed."""
    try:
        import comfy.memory_management
        import comfy.ops
        import comfy.quant_ops as q
        import comfy_kitchen.tensor  # noqa: F401
    except Exception:
        return False
    return (
        bool(getattr(q, "_CK_AVAILABLE", False))
        and hasattr(q, "register_layout_class")
        and getattr(q.QuantizedTensor, "__module__", "").startswith("comfy_kitchen")
        and hasattr(comfy.memory_management, "interpret_gathered_like")
        and accepts(comfy.ops.cast_bias_weight, "compute_dtype")
    )


def dynamic_vram_active() -> bool:
    import comfy.model_patcher as mp

    dyn = getattr(mp, "ModelPatcherDynamic", None)
    if dyn is None or getattr(mp, "CoreModelPatcher", None) is not dyn:
        return False
    try:
        import comfy.memory_management

        return bool(getattr(comfy.memory_management, "aimdo_enabled", False))
    except Exception:
        return False


def dynamic_wanted(load_device, disable_dynamic: bool = False) -> bool:
    """Load as QuantizedTensors for ModelPatcherDynamic? (else the legacy path)."""
    import comfy.model_management as mm

    if disable_dynamic or mm.is_device_cpu(load_device):
        return False
    return dynamic_vram_active() and native_qt_available()
