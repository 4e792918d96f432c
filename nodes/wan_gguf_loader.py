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
                "Loads a Wan image-to-video model from a .gguf file: Wan 2.1 I2V (480p or 720p), either expert "
                "of Wan 2.2 I2V A14B (one loader per expert: high noise and low noise), or Wan 2.2 TI2V 5B. "
                "Weights stay quantized in memory and are dequantized layer by layer while sampling. Names "
                "what the file is on the node; refuses T2V files, other Wan variants and other models."
            ),
            inputs=[
                io.Combo.Input(
                    "unet_name",
                    options=list_gguf(*FOLDERS),
                    tooltip="A Wan I2V GGUF from models/diffusion_models or models/unet: Wan 2.1 "
                    "wan2.1-i2v-14b-480p-Q4_K_M.gguf (720p: wan2.1-i2v-14b-720p-*.gguf), Wan 2.2 "
                    "wan2.2_i2v_high_noise_14B_Q4_K_M.gguf / wan2.2_i2v_low_noise_14B_Q4_K_M.gguf (the A14B "
                    "pair), or Wan2.2-TI2V-5B-Q4_K_M.gguf.",
                ),
            ],
            outputs=[io.Model.Output(tooltip="The Wan model, for ModelSamplingSD3 / KSampler(Advanced) / LoRA "
                                             "loaders.")],
        )

    @classmethod
    def execute(cls, unet_name) -> io.NodeOutput:
        from ..twostage_i2v.comfy.wan_loader import load_wan_i2v

        return io.NodeOutput(load_wan_i2v(resolve(unet_name, *FOLDERS)))


NODES = [WanI2VLoaderGGUF]
