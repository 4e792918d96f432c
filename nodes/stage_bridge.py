"""Nodes "Stage Bridge (image → Wan I2V frame)" and "Stage Plan (SDXL size for a Wan target)"."""

from __future__ import annotations

from comfy_api.latest import io

from ..twostage_i2v.bridge import geometry, pixels

CATEGORY = "TwoStage I2V"


def _target_inputs() -> list:
    return [
        io.Combo.Input("target", options=list(geometry.TARGETS), default=geometry.TARGETS[0],
                       tooltip="Wan I2V frame: Wan 2.1 480p and Wan 2.2 A14B 832x480 / 480x832 / 624x624, Wan 2.1 "
                               "720p 1280x720 / 720x1280, Wan 2.2 TI2V 5B 1280x704 / 704x1280, or custom "
                               "(width/height below)."),
        io.Int.Input("width", default=832, min=16, max=4096, step=16,
                     tooltip="Custom target width (only with target = custom); a multiple of 16 (32 for the 5B)."),
        io.Int.Input("height", default=480, min=16, max=4096, step=16,
                     tooltip="Custom target height (only with target = custom); a multiple of 16 (32 for the 5B)."),
    ]


class StageBridge(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TwoStageI2V_StageBridge",
            display_name="Stage Bridge (image → Wan I2V frame)",
            category=CATEGORY,
            description=(
                "Turns the stage-1 image into exactly the frame Wan image-to-video (2.1, 2.2 A14B, 2.2 TI2V 5B) takes, and says how: crop, "
                "pad, stretch or the Wan2.1 repo's own area rule; sizes in multiples of 16; the clip length snapped "
                "to 4n+1. Wire width, height and length into WanImageToVideo (Wan22ImageToVideoLatent for the 5B). Warns on the node when it upscales."
            ),
            inputs=[
                io.Image.Input("image", tooltip="The stage-1 image (any size, batch, grey, RGB or RGBA)."),
                *_target_inputs(),
                io.Combo.Input("orientation", options=list(geometry.ORIENTATIONS), default="auto",
                               tooltip="auto: turn the target to follow a portrait or landscape image; "
                                       "as target: keep it."),
                io.Combo.Input("fit", options=list(geometry.FITS), default="crop",
                               tooltip="crop: fill the frame, cut the overflow; pad: show the whole image, fill the "
                                       "rest; stretch: distort to the frame; official_area: keep the aspect at the "
                                       "target's area (Wan2.1 repo rule; the size then differs from the target)."),
                io.Combo.Input("anchor", options=list(geometry.ANCHORS), default="center",
                               tooltip="What crop keeps, or where pad places the image."),
                io.Combo.Input("pad_style", options=list(pixels.PAD_STYLES), default="color",
                               tooltip="pad fill: color, edge (repeat the border pixels) or blur (a blurred copy)."),
                io.String.Input("pad_color", default="#000000",
                                tooltip="#RRGGBB: the pad fill, and what alpha is composited on in every mode."),
                io.Combo.Input("resample", options=list(pixels.RESAMPLERS), default="lanczos",
                               tooltip="lanczos: Pillow Lanczos in float (sharpest); bicubic/bilinear: antialiased "
                                       "when shrinking; area: box average."),
                io.Combo.Input("length_from", options=["frames", "seconds"], default="frames",
                               tooltip="Clip length from a frame count, or from seconds x fps."),
                io.Int.Input("frames", default=81, min=1, max=1025,
                             tooltip="Frames (length_from = frames); snapped to the nearest 4n+1. Wan 2.1 and 2.2 A14B: 81 "
                                     "(5 s at 16 fps); Wan 2.2 TI2V 5B: 121 (5 s at 24 fps)."),
                io.Float.Input("seconds", default=5.0, min=0.0, max=600.0, step=0.1,
                               tooltip="Seconds (length_from = seconds); frames = seconds x fps, snapped to 4n+1."),
                io.Float.Input("fps", default=16.0, min=1.0, max=120.0, step=1.0,
                               tooltip="Frame rate used with seconds; Wan 2.1 and 2.2 A14B make 16 fps, the 2.2 TI2V 5B 24."),
            ],
            # Display names only: 0.3.75 refuses output ids that repeat an input id ("width", "height").
            outputs=[
                io.Image.Output(display_name="image", tooltip="Exactly width x height, RGB in [0, 1]."),
                io.Int.Output(display_name="width"),
                io.Int.Output(display_name="height"),
                io.Int.Output(display_name="length", tooltip="Frames, 4n+1: WanImageToVideo's length."),
                io.Mask.Output(display_name="mask", tooltip="1 where the image is, 0 on padding."),
            ],
        )

    @classmethod
    def execute(cls, image, target, width, height, orientation, fit, anchor, pad_style, pad_color, resample,
                length_from, frames, seconds, fps) -> io.NodeOutput:
        if image is None:
            raise ValueError("Stage Bridge: the image input is empty; connect the stage-1 image")
        images = pixels.check_image(image)
        batch, src_h, src_w, channels = images.shape
        tw, th = geometry.target_size(target, width, height)
        details = geometry.plan_details(src_w, src_h, tw, th, fit, orientation, anchor)
        out, mask = pixels.apply_plan(images, details, resample, pad_style, pad_color)
        length, length_note = geometry.clip_length(length_from, frames, seconds, fps)
        text = geometry.describe(details, resample, pad_style, pad_color, length_note, batch, channels)
        ui = {"text": [text], "bridge_plan": [{**details, "length": length}]}
        return io.NodeOutput(out, details["width"], details["height"], length, mask, ui=ui)


class StagePlan(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="TwoStageI2V_StagePlan",
            display_name="Stage Plan (SDXL size for a Wan target)",
            category=CATEGORY,
            description=(
                "The stage-1 (SDXL / Illustrious) size for a Wan target: same aspect, about one megapixel, "
                "multiples of 64 (832x480 -> 1344x768), so stage 1 renders at a native size and the Stage Bridge "
                "only scales down."
            ),
            inputs=_target_inputs(),
            outputs=[
                io.Int.Output(display_name="stage1_width"),
                io.Int.Output(display_name="stage1_height"),
                io.Int.Output(display_name="width"),
                io.Int.Output(display_name="height"),
            ],
        )

    @classmethod
    def execute(cls, target, width, height) -> io.NodeOutput:
        tw, th = geometry.target_size(target, width, height)
        s1w, s1h = geometry.stage1_size(tw, th)
        text = f"stage 1: {s1w}x{s1h} ({s1w * s1h / 1e6:.2f} MP) -> Wan {tw}x{th}"
        return io.NodeOutput(s1w, s1h, tw, th, ui={"text": [text]})


NODES = [StageBridge, StagePlan]
