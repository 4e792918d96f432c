"""Wan 2.2 on a real GPU: the A14B pair (4-step workflow: both experts, both speed LoRAs) and the TI2V
5B, small, through the real server with dynamic VRAM and with the legacy loader.

Runs wherever CUDA is present (CI machines have none; the project's GPU runs do):
    TWOSTAGE_COMFYUI_TREE=0.30.0 .venv/bin/python -m pytest -c tests/pytest.ini tests/test_wan22_gpu.py -q -s
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from harness.server import ComfyServer
from twostage_i2v.headless import demo_graph
from twostage_i2v.headless.api_graphs import decode_video
from twostage_i2v.headless.object_info import object_info_from_server
from twostage_i2v.workflow.build import SmallRun

pytestmark = [pytest.mark.server, pytest.mark.slow,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("name,loaded", [
    ("two_stage_wan22_i2v_a14b_480p_4step", ["Wan 2.2 I2V A14B, high-noise expert", "Wan 2.2 I2V A14B, low-noise expert"]),
    ("two_stage_wan22_ti2v_5b_720p", ["Wan 2.2 TI2V"]),
])
def test_wan22_workflow_on_the_gpu_both_memory_paths(comfy, comfy_base, tiny_models, artifacts, name, loaded):
    if comfy.core("comfy.features").native_qt_available() is False:
        pytest.skip("this ComfyUI has no dynamic VRAM")
    names = demo_graph.install_models(comfy_base, name)
    run = SmallRun(video=(64, 64), frames=9)
    for label, args, path_text in (("dynamic", [], "packed for dynamic VRAM"),
                                   ("legacy", ["--disable-dynamic-vram"], "dequantized per layer")):
        log = artifacts / f"server-gpu-{name}-{label}.log"
        with ComfyServer(comfy.root, comfy_base, log, extra_args=args, cpu=False) as srv:
            ui, api = demo_graph.small_workflow(object_info_from_server(srv.url), names, run, name=name)
            started = time.monotonic()
            entry = srv.client.run(api, workflow=ui, timeout=900)
            elapsed = time.monotonic() - started
            text = srv.log()
        files = demo_graph.saved_files(entry["outputs"], Path(comfy_base) / "output")
        (mp4,) = [f for f in files if f.suffix == ".mp4"]
        assert decode_video(mp4)[0] == run.frames
        for words in loaded:
            assert words in text, f"{label}: the log does not say it loaded {words}"
        assert path_text in text, f"{label}: {path_text!r} not in the server log"
        print(f"{name} {label}: {elapsed:.1f} s")
