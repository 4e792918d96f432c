"""A tiny umt5 encoder written the way llama.cpp writes umt5-xxl: for tests.

Same layout as the real ``umt5-xxl-encoder-Q8_0.gguf`` (``t5encoder``
metadata, ``enc.blk.N.*`` tensors, a sentencepiece tokenizer in
``tokenizer.ggml.*`` padded with unused ``[PADn]`` rows), at about 5 M
parameters (umt5-xxl's 4096 width, tiny blocks). Its tokenizer is a unigram sentencepiece model trained at build
time on a small corpus holding English motion prompts and Wan's Chinese
negative prompt, so both tokenize into real pieces.

The tokenizer parts need no ComfyUI; the weights are shaped by ComfyUI's own
T5 class, so building them needs ComfyUI imported (see headless.inprocess).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from ..models import spm_proto
from ..models.umt5_file import comfy_to_llama, tokenizer_metadata

# Width 4096 is fixed: Wan's text_embedding takes umt5-xxl's 4096-wide states.
# Everything inside the blocks can be small.
TINY_CONFIG = {
    "d_model": 4096,
    "d_ff": 64,
    "num_layers": 2,
    "num_heads": 2,
    "d_kv": 32,
    "relative_attention_num_buckets": 32,
    "layer_norm_epsilon": 1e-6,
    "model_type": "umt5",
    "is_gated_act": True,
    "dense_act_fn": "gelu_pytorch_tanh",
}
TINY_VOCAB_TARGET = 400
CONTEXT_LENGTH = 512
WEIGHT_SEED = 5

WAN_NEGATIVE_PROMPT = (
    "镜头晃动，色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，"
    "JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，"
    "手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)
CORPUS = (
    "a girl turns her head slowly and smiles at the camera",
    "the camera pans left across a quiet street at sunset",
    "her long hair and dress flutter gently in the wind",
    "a knight raises his sword while the cape waves behind him",
    "slow zoom in on the face, soft light, cinematic motion",
    "the cat blinks, stretches and walks out of the frame",
    "waves crash on the rocks and the sea foam drifts away",
    "cherry blossom petals fall and swirl around the dancer",
    "the character walks forward, the background scrolls by",
    "smooth natural movement, subtle breathing, eyes blinking",
    "camera orbits around the statue as clouds move fast",
    "rain drops run down the window while neon signs flicker",
    "anime style, a boy jumps over the fence and lands softly",
    "the flag waves, the trees sway, birds fly across the sky",
    "she looks up, lifts her hand and waves hello",
    "static shot, candles flicker, smoke rises slowly",
    "fast dolly out, the city lights glow at night",
    "two friends laugh and walk together down the hallway",
    "a dragon spreads its wings and takes off from the mountain",
    "the little robot rolls across the kitchen floor and beeps",
    "steam rises from a cup of coffee on a wooden table",
    "leaves rustle as a gentle breeze passes through the forest",
    "the singer closes her eyes and sways to the music",
    "a horse gallops through the meadow, dust kicks up behind it",
    "snow falls quietly over the village, chimneys puff smoke",
    "the warrior spins and kicks, sparks fly from the blade",
    "fireworks burst over the harbour, reflections shimmer on the water",
    "the old man nods, adjusts his glasses and turns the page",
    "a butterfly lands on the flower and slowly opens its wings",
    "tracking shot following a cyclist through crowded streets",
    "handheld camera, slight shake, the runner crosses the finish line",
    "the magician waves his wand and glowing particles swirl upward",
    "time lapse of clouds rolling over snowy peaks",
    "close up, the girl tilts her head, earrings swing",
    "the ship rocks on stormy waves as lightning strikes",
    "masterpiece, best quality, high detail, consistent character",
    "blurry, low quality, distorted hands, extra fingers, flicker, jitter",
    WAN_NEGATIVE_PROMPT,
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止",
    "一个女孩在风中慢慢转身，头发飘动，镜头缓慢推进",
    "最差质量，低质量，丑陋的，残缺的，多余的手指，畸形的，毁容的",
)


def train_tiny_tokenizer(vocab_size: int = TINY_VOCAB_TARGET, byte_fallback: bool = False) -> bytes:
    """A unigram sentencepiece model with umt5's special ids (pad 0, eos 1, unk 2, no bos)."""
    import sentencepiece

    buf = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 4),
        model_writer=buf,
        model_type="unigram",
        vocab_size=vocab_size,
        hard_vocab_limit=False,  # a small corpus may not support the full target
        character_coverage=1.0,  # every corpus character, Chinese included, becomes a piece
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        byte_fallback=byte_fallback,
        num_threads=1,
        minloglevel=2,
    )
    return buf.getvalue()


def embedding_rows(n_pieces: int) -> int:
    """Round up to a multiple of 64 with at least one spare row, as real umt5 pads (256384 rows)."""
    return (n_pieces // 64 + 1) * 64


def tiny_config(n_rows: int) -> dict:
    return {**TINY_CONFIG, "vocab_size": n_rows}


def tiny_umt5_state_dict(config: dict, seed: int = WEIGHT_SEED) -> dict:
    """Seeded random weights in ComfyUI's names, shaped by ComfyUI's T5 class (needs ComfyUI)."""
    import comfy.ops
    import comfy.text_encoders.t5
    import torch

    from .models import randomise

    with torch.device("meta"):
        model = comfy.text_encoders.t5.T5(config, torch.float32, "meta", comfy.ops.manual_cast)
    return randomise({k: tuple(v.shape) for k, v in model.state_dict().items()}, seed)


def _tensor_type(name: str, shape: tuple, type_name: str):
    import gguf

    T = gguf.GGMLQuantizationType
    qtype = T[type_name]
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    # As llama.cpp's quantizer: vectors and the relative-position bias stay F32.
    if len(shape) < 2 or "attn_rel_b" in name or shape[-1] % block:
        return T.F32
    return qtype


def write_t5_gguf(
    path: str | os.PathLike,
    tensors: dict,
    config: dict,
    tokenizer: spm_proto.SpmModel | None,
    type_name: str = "F32",
    arch: str = "t5encoder",
    naming: str = "llama",
    metadata: dict | None = None,
) -> Path:
    """Write a T5-family encoder GGUF from ComfyUI-named float tensors.

    ``naming`` "llama" writes llama.cpp names and ``{arch}.*`` size keys;
    "comfy" keeps ComfyUI's names and writes no size keys (as files made from
    ComfyUI state dicts), with the tokenizer as an I8 ``spiece_model`` tensor.
    ``metadata`` adds or overrides keys (a None value drops one).
    """
    import gguf

    from ..gguf.quantize import quantize

    path = Path(path)
    kv: dict = {}
    if naming == "llama":
        p = arch + "."
        kv.update({
            p + "context_length": CONTEXT_LENGTH,
            p + "embedding_length": config["d_model"],
            p + "feed_forward_length": config["d_ff"],
            p + "block_count": config["num_layers"],
            p + "attention.head_count": config["num_heads"],
            p + "attention.key_length": config["d_kv"],
            p + "attention.value_length": config["d_kv"],
            p + "attention.layer_norm_epsilon": float(config["layer_norm_epsilon"]),
            p + "attention.layer_norm_rms_epsilon": float(config["layer_norm_epsilon"]),
            p + "attention.relative_buckets_count": config["relative_attention_num_buckets"],
        })
        if tokenizer is not None:
            kv.update(tokenizer_metadata(tokenizer, config["vocab_size"]))
    kv["general.name"] = "tiny random umt5 encoder (twostage_i2v tests)"
    kv.update(metadata or {})

    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    writer = gguf.GGUFWriter(str(tmp), arch)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for key, value in kv.items():
        if value is not None:
            _add_value(writer, key, value)

    names = sorted(tensors, key=_llama_order)
    for name in names:
        values = np.ascontiguousarray(tensors[name].detach().cpu().float().numpy() if hasattr(tensors[name], "detach") else tensors[name], dtype=np.float32)
        out_name = comfy_to_llama(name) if naming == "llama" else name
        qtype = _tensor_type(out_name, values.shape, type_name)
        if qtype == gguf.GGMLQuantizationType.F32:
            writer.add_tensor(out_name, values)
        else:
            writer.add_tensor(out_name, quantize(values, qtype), raw_dtype=qtype)
    if naming == "comfy" and tokenizer is not None:
        proto = np.frombuffer(spm_proto.encode_model_proto(tokenizer), dtype=np.int8).copy()
        writer.add_tensor("spiece_model", proto)
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, path)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    return path


def _llama_order(name: str):
    # token_embd, blocks in order, output norm last (llama.cpp's order; cosmetic).
    if name == "shared.weight":
        return (0, 0, name)
    if name.startswith("encoder.block."):
        return (1, int(name.split(".")[2]), name)
    return (2, 0, name)


def _add_value(writer, key: str, value) -> None:
    import gguf

    T = gguf.GGUFValueType
    if key == "tokenizer.ggml.scores":
        writer.add_array(key, [float(v) for v in value])
    elif key == "tokenizer.ggml.token_type":
        writer.add_key_value(key, [int(v) for v in value], T.ARRAY, sub_type=T.INT32)
    elif isinstance(value, (bytes, bytearray)):
        writer.add_array(key, bytes(value))  # a UINT8 array, as llama.cpp stores the charsmap
    elif isinstance(value, bool):
        writer.add_bool(key, value)
    elif isinstance(value, int):
        writer.add_uint32(key, value) if value >= 0 else writer.add_int32(key, value)
    elif isinstance(value, float):
        writer.add_float32(key, value)
    elif isinstance(value, str):
        writer.add_string(key, value)
    elif isinstance(value, (list, tuple)):
        writer.add_array(key, list(value))
    else:
        raise TypeError(f"metadata {key!r}: cannot store a {type(value).__name__}")


def tiny_tokenizer_model() -> spm_proto.SpmModel:
    return spm_proto.decode_model_proto(train_tiny_tokenizer())


def write_tiny_umt5_gguf(path: str | os.PathLike, type_name: str = "F32") -> Path:
    """The tiny umt5 encoder as a llama.cpp-style GGUF, weights in ``type_name`` ("F32" or "Q8_0")."""
    tok = tiny_tokenizer_model()
    config = tiny_config(embedding_rows(len(tok.pieces)))
    return write_t5_gguf(path, tiny_umt5_state_dict(config), config, tok, type_name)
