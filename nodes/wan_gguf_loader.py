"""Node "Load Wan I2V Model (GGUF)"."""

from __future__ import annotations

from comfy_api.latest import io

from ..twostage_i2v.comfy.folders import list_gguf, resolve

FOLDERS = ("diffusion_models", "unet")


class WanI2VLoaderGGUF(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TwoStageI2V_WanI2VLoaderGGUF",
            display_name="Load Wan I2V Model (GGUF)",
            category="TwoStage I2V",
            description=(
                "Loads a Wan 2.1 image-to-video model from a .gguf file. Weights stay quantized in memory "
                "and are dequantized layer by layer while sampling. Refuses T2V files and other models."
            ),
            inputs=[
                io.Combo.Input(
                    "unet_name",
                    options=list_gguf(*FOLDERS),
                    tooltip="A Wan 2.1 I2V GGUF from models/diffusion_models or models/unet, "
                    "e.g. wan2.1-i2v-14b-480p-Q4_K_M.gguf (720p: wan2.1-i2v-14b-720p-*.gguf).",
                ),
            ],
            outputs=[io.Model.Output(tooltip="The Wan 2.1 I2V model, for ModelSamplingSD3 / KSampler / LoRA loaders.")],
        )

    @classmethod
    def execute(cls, unet_name) -> io.NodeOutput:
        from ..twostage_i2v.comfy.wan_loader import load_wan_i2v

        return io.NodeOutput(load_wan_i2v(resolve(unet_name, *FOLDERS)))


NODES = [WanI2VLoaderGGUF]
