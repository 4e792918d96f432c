"""Node "Motion Prompt (Wan I2V)": compose, lint and encode the motion prompt and Wan's negative."""

from __future__ import annotations

from comfy_api.latest import io

from ..twostage_i2v.prompt import lint as prompt_lint, wan_prompts

LINT_MODES = ["warn", "strip", "off"]


def _encode(clip, text: str):
    # Exactly core CLIPTextEncode, so the conditioning is interchangeable with it.
    return clip.encode_from_tokens_scheduled(clip.tokenize(text))


class MotionPrompt(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TwoStageI2V_MotionPrompt",
            display_name="Motion Prompt (Wan I2V)",
            category="TwoStage I2V",
            description=(
                "Text conditioning for Wan 2.1 image-to-video. The start image already fixes how things look, so "
                "describe how they move. Appends an optional camera move and pace, checks the prompt offline "
                "(appearance words, conflicting camera moves, too many actions, empty, over 512 umt5 tokens), "
                "and encodes it and Wan's official negative prompt like CLIP Text Encode."
            ),
            inputs=[
                io.Clip.Input("clip", tooltip="Wan's umt5-xxl text encoder: Load CLIP (type wan) or Load Wan Text Encoder (GGUF)."),
                io.String.Input(
                    "motion", multiline=True, default="", dynamic_prompts=True,
                    placeholder="e.g. " + wan_prompts.EXAMPLE_MOTION,
                    tooltip="What moves and how. Leave hair colour, clothing and quality tags out: the start image has them.",
                ),
                io.Combo.Input("camera", options=list(wan_prompts.CAMERA_PRESETS), default=wan_prompts.DEFAULT_CAMERA,
                               tooltip="A camera move appended after the motion text."),
                io.Combo.Input("pace", options=list(wan_prompts.PACE_PRESETS), default=wan_prompts.DEFAULT_PACE,
                               tooltip="A speed phrase appended last; natural adds nothing."),
                io.String.Input(
                    "negative", multiline=True, default=wan_prompts.WAN_I2V_NEGATIVE, dynamic_prompts=True,
                    tooltip="Negative prompt. Default: Wan 2.1's official one (its I2V pipeline adds 镜头晃动, camera shake).",
                ),
                io.Combo.Input("lint", options=LINT_MODES, default="warn",
                               tooltip="warn: report problems; strip: also remove appearance words before encoding; off: no checks."),
            ],
            # Outputs carry display names only: 0.3.75 refuses output ids that repeat an input id ("negative").
            outputs=[
                io.Conditioning.Output(display_name="positive"),
                io.Conditioning.Output(display_name="negative"),
                io.String.Output(display_name="prompt", tooltip="The final positive text that was encoded."),
                io.String.Output(display_name="report", tooltip="The lint report also shown on the node."),
            ],
        )

    @classmethod
    def execute(cls, clip, motion, camera, pace, negative, lint) -> io.NodeOutput:
        if clip is None:
            raise RuntimeError("Motion Prompt (Wan I2V): the clip input is empty; connect Load CLIP (type wan) or "
                               "Load Wan Text Encoder (GGUF)")
        if lint not in LINT_MODES:
            raise ValueError(f"Motion Prompt (Wan I2V): unknown lint mode {lint!r}; pick one of {', '.join(LINT_MODES)}")
        removed: list[str] = []
        if lint == "strip":
            motion, removed = prompt_lint.strip_appearance(motion)
        prompt = wan_prompts.compose_prompt(motion, camera, pace)
        counter = prompt_lint.clip_token_counter(clip)
        if lint == "off":
            warnings, tokens = [], None
        else:
            warnings = prompt_lint.lint_prompt(prompt, tokenizer=counter)
            tokens = prompt_lint.count_tokens(prompt, counter)
        report = prompt_lint.format_report(prompt, warnings, mode=lint, removed=removed, tokens=tokens)
        return io.NodeOutput(_encode(clip, prompt), _encode(clip, negative), prompt, report, ui={"text": [report]})


NODES = [MotionPrompt]
