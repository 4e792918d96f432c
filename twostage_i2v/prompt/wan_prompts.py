"""Wan 2.1 image-to-video prompt pieces: the official negative prompt, camera and
pace phrases, and how the node joins them to the user's motion text.

The composed order is fixed and documented in ``compose_prompt``; the node, the
CLI and the tests all build the final text through it.
"""

from __future__ import annotations

import re

# Wan2.1's shared config (``wan/configs/shared_config.py``, ``sample_neg_prompt``)
# with the "camera shake" prefix its I2V pipeline puts in front.
WAN_I2V_NEGATIVE = (
    "镜头晃动，色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，"
    "JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，"
    "手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)
CAMERA_SHAKE_NEGATIVE = "镜头晃动"

# The kind of prompt I2V wants: motion, plus lighting and style words, no appearance.
EXAMPLE_MOTION = (
    "Her hair sways gently in the breeze, she blinks and tilts her head slightly, "
    "soft ambient lighting, anime illustration style"
)

# Phrased as Wan's own prompt extender writes camera work ("the camera ..."), and
# each one is recognised by the camera rules in prompt/rules.json, so a preset that
# contradicts the motion text is reported like any other camera conflict.
CAMERA_PHRASES: dict[str, str] = {
    "none": "",
    "static": "static shot, the camera stays fixed",
    "slow push-in": "the camera slowly pushes in",
    "pull back": "the camera pulls back",
    "pan left": "the camera pans left",
    "pan right": "the camera pans right",
    "tilt up": "the camera tilts up",
    "tilt down": "the camera tilts down",
    "orbit left": "the camera orbits left around the subject",
    "orbit right": "the camera orbits right around the subject",
    "handheld": "handheld camera, subtle natural camera movement",
}
CAMERA_PRESETS = tuple(CAMERA_PHRASES)

# "natural" adds nothing: it leaves the speed to the model and to the motion text.
PACE_PHRASES: dict[str, str] = {
    "slow": "slow, gentle motion",
    "natural": "",
    "fast": "fast, energetic motion",
}
PACE_PRESETS = tuple(PACE_PHRASES)
DEFAULT_CAMERA = "none"
DEFAULT_PACE = "natural"

JOINER = ", "
# Trailing separators of the motion text are dropped so that "She blinks." and a
# camera phrase join as "She blinks, the camera ..." rather than "She blinks., ...".
_TRAILING = re.compile(r"[\s,，、;；.。!！?？]+$")


def _choice(value: str, table: dict[str, str], what: str) -> str:
    try:
        return table[value]
    except KeyError:
        raise ValueError(f"unknown {what} {value!r}; pick one of: {', '.join(table)}") from None


def compose_prompt(motion: str, camera: str = DEFAULT_CAMERA, pace: str = DEFAULT_PACE) -> str:
    """The final positive prompt: ``motion``, then the camera phrase, then the pace phrase.

    Parts are joined with ", ". The motion text loses its surrounding
    whitespace and, when a phrase follows it, its trailing separators.
    Empty parts (camera "none", pace "natural", blank motion) are left out, so
    with both helpers at their defaults the result is the motion text, trimmed.
    The motion comes first because it is what the user wrote and what matters
    most; the helpers only add camera work and speed.
    """
    helpers = [p for p in (_choice(camera, CAMERA_PHRASES, "camera preset"), _choice(pace, PACE_PHRASES, "pace")) if p]
    text = motion.strip()
    if helpers:
        text = _TRAILING.sub("", text)
    return JOINER.join(p for p in (text, *helpers) if p)
