"""API-format prompts for the small Wan 2.1 I2V graphs that the tests and the demo run."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

MOTION = "Her hair sways gently in the breeze, she blinks and tilts her head slightly"


def write_start_image(input_dir: Path, name: str = "start.png", size=(96, 80)) -> str:
    """A deterministic gradient image in ComfyUI's input folder."""
    w, h = size
    img = Image.new("RGB", (w, h))
    img.putdata([((x * 255) // w, (y * 255) // h, ((x + y) * 127) // (w + h)) for y in range(h) for x in range(w)])
    input_dir.mkdir(parents=True, exist_ok=True)
    img.save(input_dir / name)
    return name


def wan_i2v_prompt(models: dict, image: str, *, model_node: dict | None = None, text_encoder: str = "umt5_f32",
                   width=64, height=64, length=9, steps=2, cfg=1.0, seed=7, prefix="tiny_wan",
                   extra_model_nodes: dict | None = None, model_ref=("unet", 0)) -> dict:
    """LoadImage -> CLIPVisionEncode, text conditioning, WanImageToVideo, KSampler, VAEDecode,
    CreateVideo, SaveVideo (mp4). ``model_node`` replaces the core UNETLoader."""
    name = lambda key: models[key].name  # noqa: E731
    prompt = {
        "image": {"class_type": "LoadImage", "inputs": {"image": image}},
        "clip_vision": {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": name("clip_vision_h")}},
        "clip_vision_encode": {"class_type": "CLIPVisionEncode",
                               "inputs": {"clip_vision": ["clip_vision", 0], "image": ["image", 0], "crop": "none"}},
        "text_encoder": {"class_type": "TwoStageI2V_TextEncoderGGUF",
                         "inputs": {"clip_name": name(text_encoder), "device": "default"}},
        "positive": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["text_encoder", 0], "text": MOTION}},
        "negative": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["text_encoder", 0], "text": "static, blurry"}},
        "unet": model_node or {"class_type": "UNETLoader",
                               "inputs": {"unet_name": name("wan_i2v"), "weight_dtype": "default"}},
        "vae": {"class_type": "VAELoader", "inputs": {"vae_name": name("wan_vae")}},
        "i2v": {"class_type": "WanImageToVideo", "inputs": {
            "positive": ["positive", 0], "negative": ["negative", 0], "vae": ["vae", 0],
            "clip_vision_output": ["clip_vision_encode", 0], "start_image": ["image", 0],
            "width": width, "height": height, "length": length, "batch_size": 1}},
        "sampler": {"class_type": "KSampler", "inputs": {
            "model": list(model_ref), "seed": seed, "steps": steps, "cfg": cfg, "sampler_name": "euler",
            "scheduler": "simple", "positive": ["i2v", 0], "negative": ["i2v", 1], "latent_image": ["i2v", 2],
            "denoise": 1.0}},
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["sampler", 0], "vae": ["vae", 0]}},
        "video": {"class_type": "CreateVideo", "inputs": {"images": ["decode", 0], "fps": 16.0}},
        "save": {"class_type": "SaveVideo", "inputs": {
            "video": ["video", 0], "filename_prefix": prefix, "format": "mp4", "codec": "h264"}},
    }
    prompt.update(extra_model_nodes or {})
    return prompt


def saved_videos(outputs: dict, output_dir: Path) -> list[Path]:
    """Paths of the files the SaveVideo node reported in the prompt's UI outputs."""
    files = []
    for node_out in outputs.values():
        for key in ("images", "video", "videos", "gifs"):
            for item in node_out.get(key, []) or []:
                if isinstance(item, dict) and "filename" in item:
                    files.append(output_dir / item.get("subfolder", "") / item["filename"])
    return [f for f in files if f.suffix.lower() in (".mp4", ".webm", ".mov")]


def decode_video(path: Path):
    """(frame count, fps, width, height, container metadata) read back with PyAV."""
    import av

    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        frames = sum(1 for _ in c.decode(stream))
        return frames, float(stream.average_rate), stream.codec_context.width, stream.codec_context.height, dict(c.metadata)
