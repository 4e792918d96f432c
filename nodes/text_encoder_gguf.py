"""Node "Load Wan Text Encoder (GGUF)"."""

from __future__ import annotations

from comfy_api.latest import io

from ..twostage_i2v.comfy.folders import list_gguf, resolve

FOLDERS = ("text_encoders", "clip")


class WanTextEncoderLoaderGGUF(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TwoStageI2V_TextEncoderGGUF",
            display_name="Load Wan Text Encoder (GGUF)",
            category="TwoStage I2V",
            description=(
                "Loads Wan's umt5-xxl text encoder from a .gguf file (e.g. umt5-xxl-encoder-Q8_0.gguf), sized by "
                "the file itself, with the tokenizer stored in the file. Use it with CLIP Text Encode. Refuses "
                "diffusion models, LLMs, CLIP and other files that are not a umt5 encoder."
            ),
            inputs=[
                io.Combo.Input(
                    "clip_name",
                    options=list_gguf(*FOLDERS),
                    tooltip="A umt5-xxl encoder GGUF from models/text_encoders or models/clip, "
                    "e.g. umt5-xxl-encoder-Q8_0.gguf or umt5-xxl-encoder-Q5_K_M.gguf.",
                ),
                io.Combo.Input(
                    "device",
                    options=["default", "cpu"],
                    default="default",
                    optional=True,
                    tooltip="cpu keeps the encoder in system memory, as core Load CLIP's device option.",
                ),
            ],
            outputs=[io.Clip.Output(tooltip="Wan's umt5 text encoder, for CLIP Text Encode.")],
        )

    @classmethod
    def execute(cls, clip_name, device="default") -> io.NodeOutput:
        import folder_paths

        from ..twostage_i2v.comfy.text_encoder import load_wan_text_encoder

        clip = load_wan_text_encoder(
            resolve(clip_name, *FOLDERS),
            device=device,
            embedding_directory=folder_paths.get_folder_paths("embeddings"),
            tokenizer_folders=folder_paths.get_folder_paths("text_encoders"),
        )
        return io.NodeOutput(clip)


NODES = [WanTextEncoderLoaderGGUF]
