"""Stage Bridge core: geometry (plan, stage-1 size, official_area, length) and pixels.

Oracles: the issue's size table, a direct transcription of the Wan2.1 repo's
area formula (numpy, as the repo writes it), a brute-force search for the
stage-1 size, Pillow's own resize on the same crop box, and hand-built
composites for alpha, grey and batches.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from twostage_i2v.bridge import geometry, pixels
from twostage_i2v.headless.inprocess import REPO_ROOT

pytestmark = pytest.mark.core

SDXL_SIZES = [(1216, 832), (832, 1216), (1344, 768), (1024, 1024), (1536, 640), (1152, 896)]

# Output size per mode for the 832x480 target, orientation auto (portrait images turn it to 480x832).
# official_area: worked by hand from the repo formula; the three the Wan facts give are 1216x832,
# 1344x768 and 1024x1024.
EXPECTED_SIZES = {
    (1216, 832): {"crop": (832, 480), "pad": (832, 480), "stretch": (832, 480), "official_area": (752, 512)},
    (832, 1216): {"crop": (480, 832), "pad": (480, 832), "stretch": (480, 832), "official_area": (512, 752)},
    (1344, 768): {"crop": (832, 480), "pad": (832, 480), "stretch": (832, 480), "official_area": (832, 464)},
    (1024, 1024): {"crop": (832, 480), "pad": (832, 480), "stretch": (832, 480), "official_area": (624, 624)},
    (1536, 640): {"crop": (832, 480), "pad": (832, 480), "stretch": (832, 480), "official_area": (976, 400)},
    (1152, 896): {"crop": (832, 480), "pad": (832, 480), "stretch": (832, 480), "official_area": (704, 544)},
}


def wan_repo_official_size(w, h, max_area=832 * 480):
    """wan/image2video.py, transcribed: vae_stride 8, patch 2."""
    aspect_ratio = h / w
    lat_h = round(np.sqrt(max_area * aspect_ratio) // 8 // 2 * 2)
    lat_w = round(np.sqrt(max_area / aspect_ratio) // 8 // 2 * 2)
    return lat_w * 8, lat_h * 8


def brute_force_stage1(tw, th):
    """All multiples of 64 up to 4096 within 10 % of 1024^2: closest log-aspect, then closest area, then narrower."""
    best = None
    for w in range(64, 4097, 64):
        for h in range(64, 4097, 64):
            if abs(w * h - 1024 * 1024) > 0.1 * 1024 * 1024:
                continue
            key = (round(abs(math.log(w / h) - math.log(tw / th)), 12), abs(w * h - 1024 * 1024), w)
            if best is None or key < best[0]:
                best = (key, (w, h))
    return best[1]


# --- geometry -----------------------------------------------------------------------------------

@pytest.mark.parametrize("src", SDXL_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("fit", geometry.FITS)
def test_output_size_per_mode_on_sdxl_sizes(src, fit):
    p = geometry.plan(*src, 832, 480, fit)
    assert (p["width"], p["height"]) == EXPECTED_SIZES[src][fit]
    assert p["width"] % 16 == 0 and p["height"] % 16 == 0
    assert p["upscaled"] is False and 0 < p["scale"] < 1
    assert (p["crop"] is None) == (fit != "crop")


@pytest.mark.parametrize("src", SDXL_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_official_area_matches_the_wan_repo_formula(src):
    p = geometry.plan(*src, 832, 480, "official_area")
    assert (p["width"], p["height"]) == wan_repo_official_size(*src)
    p720 = geometry.plan(*src, 1280, 720, "official_area")
    assert (p720["width"], p720["height"]) == wan_repo_official_size(*src, 1280 * 720)


def test_official_area_examples_from_the_wan_facts():
    for src, size in [((1216, 832), (752, 512)), ((1344, 768), (832, 464)), ((1024, 1024), (624, 624))]:
        assert geometry.official_area_size(*src, 832 * 480) == size


def test_official_area_on_many_aspects_matches_the_formula():
    for w in range(200, 3000, 37):
        for h in (300, 640, 768, 1111, 2048):
            assert geometry.official_area_size(w, h, 832 * 480) == wan_repo_official_size(w, h), (w, h)


@pytest.mark.parametrize("src", SDXL_SIZES + [(640, 360), (97, 1000), (1000, 97)], ids=str)
@pytest.mark.parametrize("anchor", geometry.ANCHORS)
def test_crop_box_covers_the_target_aspect_at_the_anchor(src, anchor):
    sw, sh = src
    p = geometry.plan_details(sw, sh, 832, 480, "crop", "as target", anchor)
    x, y, w, h = p["crop"]
    assert 0 <= x and 0 <= y and x + w <= sw and y + h <= sh
    # Largest box: one side is the whole source side; the other is the exact aspect to half a pixel.
    if sw / sh >= 832 / 480:
        assert h == sh and abs(w - sh * 832 / 480) <= 0.5
        free, pos = sw - w, x
        fixed_low, fixed_high = "left", "right"
        assert y == 0
    else:
        assert w == sw and abs(h - sw * 480 / 832) <= 0.5
        free, pos = sh - h, y
        fixed_low, fixed_high = "top", "bottom"
        assert x == 0
    if anchor == fixed_low:
        assert pos == 0
    elif anchor == fixed_high:
        assert pos == free
    else:
        assert abs(pos - (free - pos)) <= 1
    assert p["scale"] == round(max(832 / w, 480 / h), 6)


@pytest.mark.parametrize("src", SDXL_SIZES + [(640, 360), (300, 1000)], ids=str)
@pytest.mark.parametrize("anchor", geometry.ANCHORS)
def test_pad_content_box_fits_the_whole_image(src, anchor):
    sw, sh = src
    p = geometry.plan_details(sw, sh, 832, 480, "pad", "as target", anchor)
    x, y, w, h = p["content"]
    s = min(832 / sw, 480 / sh)
    assert abs(w - sw * s) <= 0.5 and abs(h - sh * s) <= 0.5
    assert (w == 832) or (h == 480)
    assert 0 <= x and 0 <= y and x + w <= 832 and y + h <= 480
    if anchor == "left":
        assert x == 0
    if anchor == "top":
        assert y == 0
    if anchor == "right":
        assert x + w == 832
    if anchor == "bottom":
        assert y + h == 480
    if anchor == "center":
        assert abs(x - (832 - x - w)) <= 1 and abs(y - (480 - y - h)) <= 1


def test_orientation_auto_follows_the_image_and_as_target_keeps_it():
    assert geometry.plan(832, 1216, 832, 480, "crop")["width"] == 480
    p = geometry.plan(832, 1216, 832, 480, "crop", "as target")
    assert (p["width"], p["height"]) == (832, 480)
    assert p["crop"] == [0, 368, 832, 480]  # a landscape band out of the middle of a portrait image
    assert geometry.plan(832, 1216, 832, 480, "crop", "as-target") == p
    assert geometry.plan(1216, 832, 480, 832, "stretch")["width"] == 832
    # Square images and square targets never turn.
    assert geometry.plan(1024, 1024, 832, 480, "crop")["width"] == 832
    assert geometry.plan(832, 1216, 624, 624, "crop")["width"] == 624
    assert geometry.plan_details(832, 1216, 832, 480, "crop")["swapped"] is True


def test_smaller_image_is_flagged_as_upscaled():
    p = geometry.plan(640, 360, 832, 480, "crop")
    assert p["upscaled"] is True and p["scale"] == round(480 / 360, 6)
    assert p["crop"] == [8, 0, 624, 360]
    assert geometry.plan(640, 360, 832, 480, "pad")["scale"] == 1.3
    text = geometry.describe(geometry.plan_details(640, 360, 832, 480, "crop"))
    assert "UPSCALED x1.333" in text
    assert "UPSCALED" not in geometry.describe(geometry.plan_details(1344, 768, 832, 480, "crop"))
    # Stretch upscales when one axis does, even though the other shrinks.
    p = geometry.plan(1600, 400, 832, 480, "stretch")
    assert p["upscaled"] is True and p["scale"] == 1.2


@pytest.mark.parametrize("target", list(geometry.PRESETS), ids=str)
def test_stage1_size_matches_a_brute_force_search(target):
    tw, th = geometry.PRESETS[target]
    s1 = geometry.stage1_size(tw, th)
    assert s1 == brute_force_stage1(tw, th)
    assert s1[0] % 64 == 0 and s1[1] % 64 == 0
    # Rendering stage 1 there means the bridge only ever scales down.
    assert geometry.plan(*s1, tw, th, "crop")["upscaled"] is False


def test_stage1_size_examples_and_customs():
    assert geometry.stage1_size(832, 480) == (1344, 768)
    assert geometry.stage1_size(480, 832) == (768, 1344)
    assert geometry.stage1_size(624, 624) == (1024, 1024)
    for tw, th in [(1024, 576), (960, 544), (1536, 640), (512, 768), (1600, 400), (320, 1280)]:
        assert geometry.stage1_size(tw, th) == brute_force_stage1(tw, th), (tw, th)
    assert geometry.plan(1344, 768, 832, 480)["stage1"] == {"width": 1344, "height": 768}


@pytest.mark.parametrize("value, nearest", [(830, "816 or 832"), (100, "96 or 112"), (1000, "992 or 1008")])
def test_custom_size_not_a_multiple_of_16_names_the_value_and_neighbours(value, nearest):
    with pytest.raises(ValueError) as e:
        geometry.target_size("custom", value, 480)
    assert str(e.value) == f"custom width {value} is not a multiple of 16: Wan 2.1 needs multiples of 16; use {nearest}"
    with pytest.raises(ValueError, match=f"custom height {value} is not a multiple of 16"):
        geometry.target_size("custom", 832, value)
    assert geometry.target_size("custom", 96, 64) == (96, 64)
    assert geometry.target_size("1280x720 (720p)", 100, 7) == (1280, 720)  # presets ignore width/height


def test_bad_inputs_are_refused_by_name():
    with pytest.raises(ValueError, match="source width is 0: the image is empty"):
        geometry.plan(0, 480, 832, 480)
    with pytest.raises(ValueError, match="unknown fit 'zoom'"):
        geometry.plan(832, 480, 832, 480, "zoom")
    with pytest.raises(ValueError, match="unknown anchor"):
        geometry.plan(832, 480, 832, 480, "crop", "auto", "middle")
    with pytest.raises(ValueError, match="unknown orientation"):
        geometry.plan(832, 480, 832, 480, "crop", "portrait")
    with pytest.raises(ValueError, match="too narrow"):
        geometry.plan(100000, 1, 832, 480, "official_area")


def nearest_4n1(n):
    """Brute force: the 4k+1 closest to n (ties: the longer), at least 1."""
    candidates = range(1, 4 * max(n, 1) + 6, 4)
    return min(candidates, key=lambda c: (abs(c - n), -c))


def test_length_snaps_to_4n_plus_1():
    for n in range(0, 200):
        assert geometry.snap_length(n) == nearest_4n1(n), n
    assert geometry.clip_length("frames", 81) == (81, "length: 81 frames")
    assert geometry.clip_length("frames", 80) == (81, "length: 80 frames -> 81 (snapped to 4n+1)")
    assert geometry.clip_length("frames", 83) == (85, "length: 83 frames -> 85 (snapped to 4n+1)")
    assert geometry.clip_length("seconds", seconds=5.0, fps=16.0) == (
        81, "length: 5 s x 16 fps = 80 frames -> 81 (snapped to 4n+1)")
    assert geometry.clip_length("seconds", seconds=3.0, fps=24.0)[0] == nearest_4n1(72)
    assert geometry.clip_length("seconds", seconds=0.0, fps=16.0)[0] == 1
    with pytest.raises(ValueError, match="fps 0.0 must be a finite number > 0"):
        geometry.clip_length("seconds", seconds=1.0, fps=0.0)
    with pytest.raises(ValueError, match="seconds nan"):
        geometry.clip_length("seconds", seconds=float("nan"))


def test_cli_plan_prints_the_plan_json():
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "twostage_i2v", "plan", *args], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=120)

    r = cli("1344x768", "--target", "832x480", "--fit", "crop", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert list(out) == ["width", "height", "scale", "upscaled", "crop", "stage1"]
    assert out == geometry.plan(1344, 768, 832, 480, "crop")
    assert out["crop"] == [6, 0, 1331, 768] and out["stage1"] == {"width": 1344, "height": 768}

    r = cli("832x1216", "--target", "832x480", "--fit", "official_area", "--orientation", "as-target", "--json")
    out = json.loads(r.stdout)
    assert (out["width"], out["height"]) == wan_repo_official_size(832, 1216) and out["crop"] is None

    r = cli("832x1216", "--target", "832x480", "--fit", "crop", "--orientation", "as-target", "--json")
    assert json.loads(r.stdout)["crop"] == [0, 368, 832, 480]

    r = cli("1216x832", "--target", "830x480", "--json")
    assert r.returncode == 2 and r.stdout == ""
    assert "target width 830 is not a multiple of 16" in r.stderr and "use 816 or 832" in r.stderr


# --- pixels -------------------------------------------------------------------------------------

def noise_image(w, h, c=3, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


def as_tensor(*arrays: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack(arrays).astype(np.float32) / 255)


def pil_resize(arr: np.ndarray, size, box, resample=Image.Resampling.LANCZOS) -> np.ndarray:
    """Pillow on the 8-bit RGB image, the way an image editor would do it."""
    out = Image.fromarray(arr).resize(size, resample, box=(box[0], box[1], box[0] + box[2], box[1] + box[3]))
    return np.asarray(out).astype(np.float32) / 255


def pil_resize_float(arr: np.ndarray, size, box, resample, cut_first=False) -> np.ndarray:
    """Pillow per channel on float planes: resampling the box in place (its filter may read pixels just
    outside the box), or on the box cut out first."""
    pb = (box[0], box[1], box[0] + box[2], box[1] + box[3])

    def one(plane):
        im = Image.fromarray(np.ascontiguousarray(plane.astype(np.float32) / 255))
        return np.asarray(im.crop(pb).resize(size, resample) if cut_first else im.resize(size, resample, box=pb))

    return np.clip(np.stack([one(arr[..., c]) for c in range(arr.shape[-1])], -1), 0, 1)


def run_bridge(image, target=(832, 480), fit="crop", anchor="center", resample="lanczos", pad_style="color",
               pad_color="#000000", orientation="auto"):
    b, h, w = image.shape[:3]
    details = geometry.plan_details(w, h, *target, fit, orientation, anchor)
    out, mask = pixels.apply_plan(image, details, resample, pad_style, pad_color)
    return out, mask, details


def photo_like(w, h, seed=0) -> np.ndarray:
    """Gradients, texture, a hard-edged block and grain, kept within [~20, ~235] as stage-1 renders mostly are."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x / w, y / h, 0.5 + 0.45 * np.sin(x / 37.0) * np.cos(y / 23.0)], -1) * 180 + 30
    img[h // 4:h // 2, w // 4:w // 2] = [220, 40, 40]
    img += np.random.default_rng(seed).normal(0, 6, img.shape)
    return np.clip(img, 0, 255).round().astype(np.uint8)


@pytest.mark.parametrize("src, anchor", [((1216, 832), "center"), ((1344, 768), "right"), ((832, 1216), "top"),
                                         ((1536, 640), "left")], ids=str)
def test_crop_is_pillow_lanczos_of_the_same_box(src, anchor):
    arr = noise_image(*src)
    out, mask, d = run_bridge(as_tensor(arr), fit="crop", anchor=anchor)
    size = (d["width"], d["height"])
    assert out.shape == (1, d["height"], d["width"], 3) and out.dtype == torch.float32
    assert torch.equal(mask, torch.ones(1, d["height"], d["width"]))
    # The resampler: Pillow's Lanczos on float planes, no 8-bit rounding anywhere.
    expected = pil_resize_float(arr, size, d["crop"], Image.Resampling.LANCZOS)
    assert float(np.abs(out[0].numpy() - expected).max()) < 1e-6
    # Against Pillow on the 8-bit RGB image, as an editor would resize it: within 2/255.
    photo = photo_like(*src, seed=2)
    out, _, d = run_bridge(as_tensor(photo), fit="crop", anchor=anchor)
    assert float(np.abs(out[0].numpy() - pil_resize(photo, size, d["crop"])).max()) <= 2 / 255


def test_eight_bit_pillow_differs_only_by_its_own_clipping():
    """Pillow's 8-bit path rounds and clips between its horizontal and vertical passes: on pure noise the
    ringing clips there and it drifts past 2/255; the float path does not, and is the one we keep."""
    arr = noise_image(1216, 832)
    out, _, d = run_bridge(as_tensor(arr), fit="crop")
    eight_bit = pil_resize(arr, (832, 480), d["crop"])
    float_planes = pil_resize_float(arr, (832, 480), d["crop"], Image.Resampling.LANCZOS)
    assert float(np.abs(out[0].numpy() - float_planes).max()) < 1e-6
    assert float(np.abs(out[0].numpy() - eight_bit).max()) > 2 / 255
    assert float(np.abs(out[0].numpy() - eight_bit).mean()) < 1 / 255


@pytest.mark.parametrize("resample, pil", [("bicubic", Image.Resampling.BICUBIC),
                                           ("bilinear", Image.Resampling.BILINEAR)])
@pytest.mark.parametrize("src", [(300, 200), (64, 40)], ids=str)
def test_bicubic_and_bilinear_equal_pillow_on_float_planes(resample, pil, src):
    # 300x200 shrinks to 160x96, 64x40 grows: both directions follow Pillow's filters, on the cut-out box.
    arr = noise_image(*src, seed=3)
    out, _, d = run_bridge(as_tensor(arr), target=(160, 96), fit="crop", resample=resample)
    expected = pil_resize_float(arr, (160, 96), d["crop"], pil, cut_first=True)
    assert float(np.abs(out[0].numpy() - expected).max()) < 1e-4


def test_area_is_a_box_average():
    arr = noise_image(192, 128, seed=4)
    out, _, _ = run_bridge(as_tensor(arr), target=(96, 64), fit="stretch", resample="area")
    expected = (arr.astype(np.float32) / 255).reshape(64, 2, 96, 2, 3).mean(axis=(1, 3))
    assert float(np.abs(out[0].numpy() - expected).max()) < 1e-6


@pytest.mark.parametrize("src, anchor", [((1024, 1024), "center"), ((1344, 768), "top"), ((832, 1216), "left"),
                                         ((1536, 640), "bottom")], ids=str)
@pytest.mark.parametrize("pad_style", pixels.PAD_STYLES)
def test_pad_keeps_the_whole_image_inside_the_mask(src, anchor, pad_style):
    arr = noise_image(*src, seed=1)
    out, mask, d = run_bridge(as_tensor(arr), fit="pad", anchor=anchor, pad_style=pad_style,
                              pad_color="#336699", orientation="as target")
    x, y, w, h = d["content"]
    # The masked region is exactly the box, and holds the whole source resized (Pillow's Lanczos as oracle).
    assert int(mask.sum()) == w * h and torch.equal(mask[0, y:y + h, x:x + w], torch.ones(h, w))
    inside = out[0][mask[0] == 1].reshape(h, w, 3).numpy()
    full = (0, 0, src[0], src[1])
    assert float(np.abs(inside - pil_resize_float(arr, (w, h), full, Image.Resampling.LANCZOS)).max()) < 1e-6
    outside = out[0][mask[0] == 0]
    assert outside.shape[0] == 832 * 480 - w * h > 0
    if pad_style == "color":
        assert torch.allclose(outside, torch.tensor([0x33, 0x66, 0x99]) / 255)
    elif pad_style == "edge":
        # Every padded pixel repeats the nearest pixel of the image area.
        ys = torch.arange(480).clamp(y, y + h - 1)
        xs = torch.arange(832).clamp(x, x + w - 1)
        assert torch.equal(out[0], out[0][ys][:, xs])
    else:
        assert float(outside.min()) >= 0 and float(outside.max()) <= 1
        # Blurred: neighbouring padded pixels differ far less than the noise they came from.
        assert float(outside.std()) < 0.05 < float(torch.from_numpy(inside).std())


def test_rgba_is_composited_on_the_pad_colour_in_every_mode():
    rgb = noise_image(200, 120, seed=5)
    alpha = np.random.default_rng(6).integers(0, 256, (120, 200, 1), dtype=np.uint8)
    rgba = as_tensor(np.concatenate([rgb, alpha], -1))
    a = rgba[..., 3:]
    bg = torch.tensor([1.0, 128 / 255, 0.0])
    composited = rgba[..., :3] * a + bg * (1 - a)
    for fit in geometry.FITS:
        got, _, _ = run_bridge(rgba, target=(96, 64), fit=fit, pad_color="#ff8000")
        want, _, _ = run_bridge(composited, target=(96, 64), fit=fit, pad_color="#ff8000")
        assert torch.allclose(got, want, atol=1e-6), fit


def test_grey_becomes_rgb_and_batches_are_frame_by_frame():
    grey = noise_image(200, 120, c=1, seed=7)
    out, _, _ = run_bridge(as_tensor(grey), target=(96, 64))
    rgb_out, _, _ = run_bridge(as_tensor(np.repeat(grey, 3, -1)), target=(96, 64))
    assert out.shape == (1, 64, 96, 3) and torch.equal(out, rgb_out)

    frames = [noise_image(200, 120, seed=s) for s in (8, 9, 10)]
    for resample in pixels.RESAMPLERS:
        batch, mask, _ = run_bridge(as_tensor(*frames), target=(96, 64), fit="pad", resample=resample)
        assert batch.shape == (3, 64, 96, 3) and mask.shape == (3, 64, 96)
        for i, f in enumerate(frames):
            single, _, _ = run_bridge(as_tensor(f), target=(96, 64), fit="pad", resample=resample)
            assert torch.allclose(batch[i], single[0], atol=1e-6), resample


def test_outputs_stay_in_range():
    # A hard black/white edge makes Lanczos and bicubic ring past [0, 1]; the bridge clamps.
    arr = np.zeros((120, 200, 3), np.uint8)
    arr[:, 100:] = 255
    for resample in pixels.RESAMPLERS:
        out, _, _ = run_bridge(as_tensor(arr), target=(96, 64), resample=resample)
        assert float(out.min()) >= 0 and float(out.max()) <= 1


@pytest.mark.parametrize("shape, message", [
    ((1, 0, 64, 3), r"image is empty \(shape \(1, 0, 64, 3\)"),
    ((0, 64, 64, 3), r"image is empty"),
    ((1, 64, 64, 5), r"image has 5 channels: the bridge takes 1 \(grey\), 2 \(grey\+alpha\), 3 \(RGB\) or 4 \(RGBA\)"),
    ((64, 64), r"image has shape \(64, 64\): expected \[batch, height, width, channels\]"),
])
def test_broken_images_are_refused_clearly(shape, message):
    with pytest.raises(ValueError, match=message):
        pixels.check_image(torch.zeros(shape))


def test_nan_and_inf_are_refused():
    img = torch.zeros(1, 16, 16, 3)
    img[0, 1, 2, 0] = float("nan")
    img[0, 3, 4, 1] = float("inf")
    with pytest.raises(ValueError, match="image has 1 NaN and 1 infinite values"):
        pixels.to_rgb(img)


def test_pad_colour_parsing():
    assert pixels.parse_color("#336699") == (0x33 / 255, 0x66 / 255, 0x99 / 255)
    assert pixels.parse_color("fff") == (1.0, 1.0, 1.0)
    for bad in ("#12345", "red", "#gg0000", ""):
        with pytest.raises(ValueError, match="is not a hex colour: write #RRGGBB"):
            pixels.parse_color(bad)
