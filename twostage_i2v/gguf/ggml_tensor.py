"""A torch tensor that holds one GGUF tensor's quantized bytes.

Its storage is the raw uint8 blocks (so memory accounting and device moves
see the quantized size), while ``.shape`` reports the logical shape, which is
what model detection and layer construction read. ``dequantize`` is the only
way to get numbers out of it.
"""

from __future__ import annotations

import torch

# Ops whose result is the same bytes (moved, copied or re-wrapped): they keep
# the GGML type and logical shape. Everything else yields plain tensors.
_KEEP_META = {
    "to", "cpu", "cuda", "clone", "detach", "detach_", "contiguous", "pin_memory", "requires_grad_",
    "share_memory_", "__deepcopy__", "_to_copy", "copy_", "data", "__get__",
}


class GGMLTensor(torch.Tensor):
    ggml_type: int
    ggml_shape: torch.Size

    @staticmethod
    def __new__(cls, raw: torch.Tensor, ggml_type: int, shape):
        t = raw.as_subclass(cls)
        t.ggml_type = int(ggml_type)
        t.ggml_shape = torch.Size(shape)
        return t

    def __init__(self, *args, **kwargs):
        pass

    @property
    def shape(self):  # type: ignore[override]
        return self.ggml_shape

    def size(self, dim=None):  # type: ignore[override]
        return self.ggml_shape if dim is None else self.ggml_shape[dim]

    @property
    def raw(self) -> torch.Tensor:
        """The quantized bytes as a plain uint8 tensor."""
        with torch._C.DisableTorchFunctionSubclass():
            return self.view(torch.uint8) if self.dtype != torch.uint8 else torch.Tensor._make_subclass(torch.Tensor, self)

    @property
    def quantized_nbytes(self) -> int:
        with torch._C.DisableTorchFunctionSubclass():
            return self.numel() * self.element_size()

    def dequantize(self, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
        from .dequant import dequantize

        raw = self.raw
        if device is not None and raw.device != torch.device(device):
            raw = raw.to(device, non_blocking=True)
        return dequantize(raw, self.ggml_type, tuple(self.ggml_shape), dtype)

    def __repr__(self):
        from .ggml_types import type_name

        return f"GGMLTensor({type_name(self.ggml_type)}, shape={tuple(self.ggml_shape)}, {self.quantized_nbytes} bytes, device={self.device})"

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        with torch._C.DisableTorchFunctionSubclass():
            result = func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        src = next((a for a in args if isinstance(a, GGMLTensor)), None)
        if name in _KEEP_META and src is not None:
            return _rewrap(result, src)
        return _strip(result)


def _rewrap(result, src: GGMLTensor):
    if isinstance(result, torch.Tensor) and not isinstance(result, torch.nn.Parameter):
        out = result.as_subclass(GGMLTensor)
        out.ggml_type, out.ggml_shape = src.ggml_type, src.ggml_shape
        return out
    if isinstance(result, torch.nn.Parameter):
        result.ggml_type, result.ggml_shape = src.ggml_type, src.ggml_shape
    return result


def _strip(result):
    if isinstance(result, GGMLTensor):
        return result.as_subclass(torch.Tensor)
    if isinstance(result, (tuple, list)):
        return type(result)(_strip(r) for r in result)
    return result


def is_ggml(t) -> bool:
    return isinstance(t, GGMLTensor)


def materialize(t: torch.Tensor, dtype: torch.dtype, device=None) -> torch.Tensor:
    """The weight in ``dtype`` on ``device``: dequantized if quantized, cast otherwise."""
    if isinstance(t, GGMLTensor):
        return t.dequantize(dtype, device)
    return t.to(device=device, dtype=dtype, non_blocking=True) if device is not None else t.to(dtype)
