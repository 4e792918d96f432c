"""A small GGUF in the test server's model folders, for the inspect route and the loader panel."""

from __future__ import annotations

from pathlib import Path

TINY_WAN_GGUF = "wan2.1-i2v-tiny-Q4_K_M.gguf"


def install_tiny_wan_gguf(comfy_base: Path, tiny_models: dict) -> Path:
    """models/diffusion_models/wan2.1-i2v-tiny-Q4_K_M.gguf, converted from the tiny Wan I2V
    safetensors with the package's own writer (once per base dir)."""
    from safetensors.torch import load_file

    from twostage_i2v.gguf_write import write_gguf

    path = Path(comfy_base) / "models" / "diffusion_models" / TINY_WAN_GGUF
    if not path.is_file():
        write_gguf(path, load_file(str(tiny_models["wan_i2v"])), "Q4_K_M")
    return path
