"""A Wan I2V GGUF file -> checked, ComfyUI-named tensors that stay quantized.

I2V here means Wan 2.1 I2V, either expert of Wan 2.2 I2V A14B, and Wan 2.2 TI2V 5B.

Every refusal happens here, before ComfyUI builds anything, so a wrong file
leaves nothing half-loaded.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..gguf.ggml_tensor import GGMLTensor
from ..gguf.ggml_types import UnsupportedQuantType, is_supported, type_name
from ..gguf.reader import GGUFFile, GGUFTensor, read_gguf
from .kind import ModelKind, classify
from .wan_names import normalise_names

I2V_EXAMPLE = "wan2.1-i2v-14b-480p-Q4_K_M.gguf"
A14B_EXAMPLES = ("wan2.2_i2v_high_noise_14B_Q4_K_M.gguf", "wan2.2_i2v_low_noise_14B_Q4_K_M.gguf")
TI2V_5B_EXAMPLE = "Wan2.2-TI2V-5B-Q4_K_M.gguf"
_FLOAT_VIEWS = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


class WrongModelError(ValueError):
    """The file is a readable model, but not the one this loader needs."""


def tensor_from_gguf(t: GGUFTensor) -> torch.Tensor:
    """A zero-copy tensor: float types as typed views, others as GGMLTensor."""
    name = type_name(t.qtype)
    if name in _FLOAT_VIEWS:
        return t.data.view(_FLOAT_VIEWS[name]).view(t.shape)
    rows = t.shape[0] if len(t.shape) > 1 else 1
    return GGMLTensor(t.data.view(rows, -1), t.qtype, t.shape)


def check_types(f: GGUFFile) -> None:
    for t in f.tensors.values():
        if not is_supported(t.qtype):
            raise UnsupportedQuantType(
                t.qtype,
                f"{f.path.name}: tensor {t.name} is stored as {type_name(t.qtype)}, which this loader cannot "
                f"dequantize; pick a file quantized as Q4_K_M, Q5_K_M, Q6_K or Q8_0",
            )


# ComfyUI's conditioning node for each Wan variant this loader does not take.
_VARIANT_NODES = {
    "vace": "WanVaceToVideo", "camera": "WanCameraImageToVideo", "s2v": "WanSoundImageToVideo",
    "humo": "WanHuMoImageToVideo", "animate": "WanAnimateToVideo", "flf2v": "WanFirstLastFrameToVideo",
    "scail": "WanSCAILToVideo", "scail2": "WanSCAILToVideo", "wandancer": "WanDancerVideo",
}
_I2V_FILES = (
    f"Wan 2.1: {I2V_EXAMPLE} (720p: wan2.1-i2v-14b-720p-*.gguf); Wan 2.2: the I2V A14B pair "
    f"{A14B_EXAMPLES[0]} and {A14B_EXAMPLES[1]} (one loader each), or {TI2V_5B_EXAMPLE}"
)


def _variant_node(kind: ModelKind) -> str | None:
    if kind.variant == "fun-control":
        return "Wan22FunControlToVideo" if kind.version == "2.2" else "WanFunControlToVideo"
    return _VARIANT_NODES.get(kind.variant)


def refuse_unless_i2v(path: Path, kind: ModelKind) -> None:
    where = "models/diffusion_models (or models/unet)"
    if kind.kind == "wan-i2v":
        return
    if kind.kind == "wan-t2v":
        raise WrongModelError(
            f"{path.name} is a {kind.describe()}: a T2V (text-to-video) model. Image-to-video needs an I2V file "
            f"with 36 input channels (48 for the TI2V 5B) in {where}: {_I2V_FILES}"
        )
    if kind.kind == "wan-variant":
        node = _variant_node(kind)
        use = f"ComfyUI drives it with {node}, not WanImageToVideo; " if node else ""
        raise WrongModelError(
            f"{path.name} is {kind.describe()}: not an image-to-video model this loader takes. {use}"
            f"'Load Wan I2V Model (GGUF)' loads Wan 2.1 I2V, Wan 2.2 I2V A14B and Wan 2.2 TI2V 5B files in "
            f"{where}: {_I2V_FILES}"
        )
    if kind.kind == "umt5":
        raise WrongModelError(
            f"{path.name} is a umt5/T5 text encoder, not a video model: load it with "
            f"'Load Wan Text Encoder (GGUF)', and pick a Wan I2V file such as {I2V_EXAMPLE} here"
        )
    raise WrongModelError(
        f"{path.name} is {kind.describe()}, not a Wan image-to-video model: pick a Wan I2V GGUF in {where}: "
        f"{_I2V_FILES}"
    )


def open_wan_i2v(path) -> tuple[GGUFFile, ModelKind, dict[str, torch.Tensor]]:
    """Read, classify and check a Wan I2V GGUF (2.1 I2V, 2.2 A14B expert, 2.2 TI2V 5B); return its
    ComfyUI-named state dict."""
    f = read_gguf(path)
    kind = classify({n: t.shape for n, t in f.tensors.items()}, f.architecture, f.path.name, f.metadata)
    refuse_unless_i2v(f.path, kind)
    check_types(f)
    names = normalise_names(f.tensors)
    sd = {names[n]: tensor_from_gguf(t) for n, t in f.tensors.items()}
    return f, kind, sd
