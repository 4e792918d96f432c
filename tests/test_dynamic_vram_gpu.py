"""Dynamic VRAM on a real GPU: the GGUF model is prepared for ModelPatcherDynamic.

Runs wherever CUDA is present (CI machines have none; the project's GPU runs do).
"""

from __future__ import annotations

import time

import pytest
import torch

from harness.server import ComfyServer
from twostage_i2v.headless.api_graphs import decode_video, saved_videos, wan_i2v_prompt, write_start_image
from twostage_i2v.models.wan_convert import write_model_gguf

pytestmark = [pytest.mark.server, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _run(server, prompt, comfy_base):
    started = time.monotonic()
    entry = server.client.run(prompt, timeout=900)
    elapsed = time.monotonic() - started
    frames, _, _, _, _ = decode_video(saved_videos(entry["outputs"], comfy_base / "output")[0])
    return elapsed, frames


@pytest.mark.parametrize("recipe", ["Q8_0", "Q4_K_M"])
def test_gguf_model_prepared_for_dynamic_vram(comfy, comfy_base, tiny_models, artifacts, recipe):
    from safetensors.torch import load_file

    if comfy.core("comfy.features").native_qt_available() is False:
        pytest.skip("this ComfyUI has no dynamic VRAM")
    name = f"wan_tiny_gpu_{recipe}.gguf"
    path = comfy_base / "models" / "diffusion_models" / name
    if not path.exists():
        write_model_gguf(path, load_file(str(tiny_models["wan_i2v"])), recipe)
    image = write_start_image(comfy_base / "input")
    node = {"class_type": "TwoStageI2V_WanI2VLoaderGGUF", "inputs": {"unet_name": name}}
    prompt = wan_i2v_prompt(tiny_models, image, model_node=node, length=9, steps=4, prefix=f"gpu/{recipe}")
    timings = {}
    for label, args in (("dynamic", []), ("legacy", ["--disable-dynamic-vram"])):
        log = artifacts / f"server-gpu-{recipe}-{label}.log"
        with ComfyServer(comfy.root, comfy_base, log, extra_args=args, cpu=False) as srv:
            timings[label] = _run(srv, prompt, comfy_base)
            text = srv.log()
        assert timings[label][1] == 9
        if label == "dynamic":
            assert "prepared for dynamic VRAM loading" in text
            assert "packed for dynamic VRAM" in text
        else:
            assert "dequantized per layer" in text
    print(f"{recipe}: dynamic {timings['dynamic'][0]:.2f} s, legacy {timings['legacy'][0]:.2f} s (4 steps)")
