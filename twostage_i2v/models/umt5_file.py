"""A umt5 text-encoder GGUF -> ComfyUI's names, configuration and tokenizer.

Two namings are read: llama.cpp's (``general.architecture`` ``t5encoder`` or
``t5``, ``token_embd``, ``enc.blk.N.attn_q`` ...) and ComfyUI's / Hugging
Face's (``shared``, ``encoder.block.N.layer.0.SelfAttention.q`` ...).

The model's size comes from the file (llama.cpp metadata keys, else the
tensor shapes) and is checked against every tensor, so a file of any size
builds the right ComfyUI model and a damaged or foreign one is refused here,
before ComfyUI allocates anything. The tokenizer is rebuilt as a
sentencepiece model from ``tokenizer.ggml.*``.

No ComfyUI import: this is shared by the loader node and ``inspect``.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from . import spm_proto
from ..gguf.ggml_types import UnsupportedQuantType, is_supported, type_name
from ..gguf.reader import GGUFFile, read_gguf
from .kind import classify

ARCHITECTURES = ("t5encoder", "t5")
EXAMPLE_FILE = "umt5-xxl-encoder-Q8_0.gguf"
WHERE = "models/text_encoders (or models/clip)"

# ComfyUI's T5 attention hard-codes 32 relative-position buckets (max distance
# 128) and T5LayerNorm's epsilon 1e-6 whatever the config says, so a file that
# needs other values cannot be built faithfully.
COMFY_BUCKETS = 32
COMFY_EPS = 1e-6
# ComfyUI's umt5 path pads with id 0 and ends prompts with id 1.
COMFY_PAD_ID, COMFY_EOS_ID = 0, 1
# Embedding tables are the sentencepiece vocabulary rounded up (umt5-xxl's
# 256384 rows); a separate tokenizer may leave at most this many rows unused.
MAX_UNUSED_ROWS = 512

_LLAMA_BLOCK = {
    "attn_norm": "layer.0.layer_norm",
    "attn_q": "layer.0.SelfAttention.q",
    "attn_k": "layer.0.SelfAttention.k",
    "attn_v": "layer.0.SelfAttention.v",
    "attn_o": "layer.0.SelfAttention.o",
    "attn_rel_b": "layer.0.SelfAttention.relative_attention_bias",
    "ffn_norm": "layer.1.layer_norm",
    "ffn_gate": "layer.1.DenseReluDense.wi_0",
    "ffn_up": "layer.1.DenseReluDense.wi_1",  # "wi" in an ungated (T5 v1.0) encoder
    "ffn_down": "layer.1.DenseReluDense.wo",
}
_LLAMA_TOP = {"token_embd": "shared", "enc.output_norm": "encoder.final_layer_norm"}
_COMFY_BLOCK = {v: k for k, v in _LLAMA_BLOCK.items()} | {"layer.1.DenseReluDense.wi": "ffn_up"}
_COMFY_TOP = {v: k for k, v in _LLAMA_TOP.items()}

_LLAMA_RE = re.compile(r"^enc\.blk\.(\d+)\.([a-z_]+)\.(weight|bias)$")
_COMFY_RE = re.compile(r"^encoder\.block\.(\d+)\.(.+)\.(weight|bias)$")
# Decoder halves of full T5 files (llama.cpp arch "t5", HF T5ForConditionalGeneration)
# and tied copies of the embedding: not part of an encoder.
_IGNORED = re.compile(r"^(dec\.|decoder\.|output\.weight$|lm_head\.|encoder\.embed_tokens\.weight$|spiece_model$)")
_COMFY_PREFIX = re.compile(r"^(?:.*?\.)?(?=(?:encoder|shared|decoder|lm_head)\.)")
_PAD_PIECE = re.compile(r"^\[PAD\d+\]$")


class WrongTextEncoderError(ValueError):
    """The file is readable but is not a umt5 encoder that ComfyUI's Wan path can run."""


class T5ConfigError(WrongTextEncoderError):
    """The file's configuration is missing, inconsistent, or one ComfyUI cannot build."""


class TokenizerError(WrongTextEncoderError):
    """No usable umt5 tokenizer in or beside the file."""


# ---------------------------------------------------------------- tensor names


def llama_to_comfy(name: str, gated: bool = True) -> str | None:
    """ComfyUI name of a llama.cpp T5 tensor; None for tensors an encoder does not use."""
    if _IGNORED.match(name):
        return None
    m = _LLAMA_RE.match(name)
    if m:
        block, part, leaf = m.groups()
        if part not in _LLAMA_BLOCK:
            raise KeyError(name)
        target = _LLAMA_BLOCK[part]
        if part == "ffn_up" and not gated:
            target = "layer.1.DenseReluDense.wi"
        return f"encoder.block.{block}.{target}.{leaf}"
    base, _, leaf = name.rpartition(".")
    if base in _LLAMA_TOP:
        return f"{_LLAMA_TOP[base]}.{leaf}"
    raise KeyError(name)


def comfy_to_llama(name: str) -> str:
    """llama.cpp name of a ComfyUI umt5 tensor (``encoder.block.0.layer.0.SelfAttention.q.weight``)."""
    m = _COMFY_RE.match(name)
    if m:
        block, part, leaf = m.groups()
        return f"enc.blk.{block}.{_COMFY_BLOCK[part]}.{leaf}"
    base, _, leaf = name.rpartition(".")
    return f"{_COMFY_TOP[base]}.{leaf}"


def _strip_comfy_prefix(name: str) -> str:
    # ComfyUI state dicts may carry "umt5xxl.transformer." and the like.
    return _COMFY_PREFIX.sub("", name, count=1)


def is_llama_naming(names) -> bool:
    return any(n == "token_embd.weight" or n.startswith("enc.blk.") for n in names)


def comfy_names(names, path_name: str = "the file") -> dict[str, str]:
    """Stored tensor name -> ComfyUI name, for every tensor the encoder uses."""
    names = list(names)
    out: dict[str, str] = {}
    unknown: list[str] = []
    if is_llama_naming(names):
        gated = any(n.endswith(".ffn_gate.weight") for n in names)
        for n in names:
            try:
                new = llama_to_comfy(n, gated)
            except KeyError:
                unknown.append(n)
                continue
            if new is not None:
                out[n] = new
    else:
        stripped = {n: _strip_comfy_prefix(n) for n in names}
        has_shared = "shared.weight" in stripped.values()
        for n, s in stripped.items():
            if s == "encoder.embed_tokens.weight" and not has_shared:
                out[n] = "shared.weight"  # HF files may keep only the tied copy
            elif _IGNORED.match(s):
                continue
            elif s in ("shared.weight", "encoder.final_layer_norm.weight") or (
                _COMFY_RE.match(s) and _COMFY_RE.match(s).group(2) in _COMFY_BLOCK
            ):
                out[n] = s
            else:
                unknown.append(n)
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise WrongTextEncoderError(
            f"{path_name} has tensors a umt5 encoder does not have ({shown}): it is not a plain umt5-xxl "
            f"encoder; pick a file such as {EXAMPLE_FILE}"
        )
    seen: dict[str, str] = {}
    for old, new in out.items():
        if new in seen:
            raise WrongTextEncoderError(f"{path_name}: tensors {seen[new]!r} and {old!r} both map to {new!r}; the file mixes two models")
        seen[new] = old
    return out


# ---------------------------------------------------------------- configuration


def _first(metadata: dict, keys, default=None):
    for k in keys:
        if metadata.get(k) is not None:
            return metadata[k]
    return default


def _single(value, key: str) -> int:
    """GGUF allows per-layer arrays for some counts; ComfyUI needs one value."""
    if isinstance(value, (list, tuple)):
        if not value or len(set(value)) != 1:
            raise T5ConfigError(f"metadata {key} differs between layers ({value}); ComfyUI's T5 needs one value")
        value = value[0]
    return int(value)


def _round_eps(eps: float) -> float:
    # GGUF stores float32: 1e-6 reads back as 9.99999997e-07.
    return float(f"{float(eps):.7g}")


def _shapes_config(shapes: dict) -> dict:
    """What the ComfyUI-named tensor shapes alone say about the model."""
    out: dict = {}
    if "shared.weight" in shapes:
        out["vocab_size"], out["d_model"] = (int(s) for s in shapes["shared.weight"])
    blocks = {int(m.group(1)) for k in shapes if (m := _COMFY_RE.match(k))}
    if blocks:
        out["num_layers"] = max(blocks) + 1
    rel0 = shapes.get("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight")
    if rel0 is not None:
        out["relative_attention_num_buckets"], out["num_heads"] = (int(s) for s in rel0)
    q = shapes.get("encoder.block.0.layer.0.SelfAttention.q.weight")
    if q is not None and out.get("num_heads"):
        out["d_kv"] = int(q[0]) // out["num_heads"]
    gated = "encoder.block.0.layer.1.DenseReluDense.wi_0.weight" in shapes
    ff = shapes.get(f"encoder.block.0.layer.1.DenseReluDense.{'wi_0' if gated else 'wi'}.weight")
    if ff is not None:
        out["d_ff"] = int(ff[0])
        out["is_gated_act"] = gated
        out["dense_act_fn"] = "gelu_pytorch_tanh" if gated else "relu"
    if blocks:
        # umt5 has its own relative-attention bias in every block; T5 only in block 0.
        per_layer = "encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight" in shapes
        out["model_type"] = "umt5" if per_layer or out.get("num_layers") == 1 else "t5"
    return out


def umt5_config_from_metadata(metadata: dict, shapes: dict | None = None) -> dict:
    """The ComfyUI/HF config dict (``umt5xxl_model_config``) of a T5-family encoder GGUF.

    Sizes come from llama.cpp's ``{arch}.*`` keys; ``shapes`` (ComfyUI tensor
    name -> shape, see ``comfy_names``) fill in what metadata cannot say
    (gating, per-layer bias, vocabulary) and stand in for all of it in files
    without llama.cpp metadata. Raises T5ConfigError when a size is missing.
    """
    arch = metadata.get("general.architecture")
    from_shapes = _shapes_config(shapes or {})
    if arch in ARCHITECTURES and f"{arch}.embedding_length" in metadata:
        p = arch + "."
        missing = [k for k in ("embedding_length", "feed_forward_length", "block_count", "attention.head_count") if metadata.get(p + k) is None]
        if missing:
            raise T5ConfigError(f"metadata lacks {', '.join(p + k for k in missing)}: the file is incomplete; download it again")
        d_model = _single(metadata[p + "embedding_length"], p + "embedding_length")
        heads = _single(metadata[p + "attention.head_count"], p + "attention.head_count")
        d_kv = _single(metadata.get(p + "attention.key_length", d_model // heads), p + "attention.key_length")
        v_len = _single(metadata.get(p + "attention.value_length", d_kv), p + "attention.value_length")
        if v_len != d_kv:
            raise T5ConfigError(f"key width {d_kv} and value width {v_len} differ; ComfyUI's T5 attention needs them equal")
        tokens = metadata.get("tokenizer.ggml.tokens")
        vocab = len(tokens) if tokens else metadata.get(p + "vocab_size", from_shapes.get("vocab_size"))
        if vocab is None:
            raise T5ConfigError("neither the metadata nor the tensors give the vocabulary size")
        eps = _first(metadata, (p + "attention.layer_norm_rms_epsilon", p + "attention.layer_norm_epsilon"), COMFY_EPS)
        config = {
            "d_model": d_model,
            "d_ff": _single(metadata[p + "feed_forward_length"], p + "feed_forward_length"),
            "num_layers": _single(metadata[p + "block_count"], p + "block_count"),
            "num_heads": heads,
            "d_kv": d_kv,
            "relative_attention_num_buckets": int(metadata.get(p + "attention.relative_buckets_count", COMFY_BUCKETS)),
            "layer_norm_epsilon": _round_eps(eps),
            "vocab_size": int(vocab),
            "model_type": from_shapes.get("model_type", "umt5"),
            "is_gated_act": from_shapes.get("is_gated_act", True),
            "dense_act_fn": from_shapes.get("dense_act_fn", "gelu_pytorch_tanh"),
        }
        if metadata.get(p + "context_length") is not None:
            config["n_positions"] = int(metadata[p + "context_length"])
        return config
    needed = ("d_model", "d_ff", "num_layers", "num_heads", "d_kv", "relative_attention_num_buckets", "vocab_size", "model_type")
    if all(k in from_shapes for k in needed):
        return {**{k: from_shapes[k] for k in needed[:-1]}, "layer_norm_epsilon": COMFY_EPS,
                "model_type": from_shapes["model_type"], "is_gated_act": from_shapes["is_gated_act"],
                "dense_act_fn": from_shapes["dense_act_fn"]}
    raise T5ConfigError(
        f"no T5 encoder configuration: architecture {arch!r} has no {arch}.embedding_length/"
        "block_count/... keys and the tensors do not give every size"
    )


def umt5_config_from_file(f: GGUFFile) -> dict:
    """``umt5_config_from_metadata`` completed by the file's tensor shapes (for ``inspect``)."""
    names = comfy_names(f.tensors, f.path.name)
    return umt5_config_from_metadata(f.metadata, {new: f.tensors[old].shape for old, new in names.items()})


def expected_shapes(config: dict) -> dict[str, tuple]:
    """Every ComfyUI tensor name and shape the config implies (ComfyUI's T5 class layout)."""
    d, inner, ff = config["d_model"], config["d_kv"] * config["num_heads"], config["d_ff"]
    out = {"shared.weight": (config["vocab_size"], d), "encoder.final_layer_norm.weight": (d,)}
    per_layer_bias = config["model_type"] == "umt5"
    for i in range(config["num_layers"]):
        b = f"encoder.block.{i}."
        out[b + "layer.0.layer_norm.weight"] = (d,)
        for x in "qkv":
            out[b + f"layer.0.SelfAttention.{x}.weight"] = (inner, d)
        out[b + "layer.0.SelfAttention.o.weight"] = (d, inner)
        if per_layer_bias or i == 0:
            out[b + "layer.0.SelfAttention.relative_attention_bias.weight"] = (config["relative_attention_num_buckets"], config["num_heads"])
        out[b + "layer.1.layer_norm.weight"] = (d,)
        if config["is_gated_act"]:
            out[b + "layer.1.DenseReluDense.wi_0.weight"] = (ff, d)
            out[b + "layer.1.DenseReluDense.wi_1.weight"] = (ff, d)
        else:
            out[b + "layer.1.DenseReluDense.wi.weight"] = (ff, d)
        out[b + "layer.1.DenseReluDense.wo.weight"] = (d, ff)
    return out


def parameter_count(config: dict) -> int:
    return sum(math.prod(s) for s in expected_shapes(config).values())


def check_buildable(config: dict, path_name: str = "the file") -> None:
    """Refuse configurations ComfyUI's T5 class would silently build differently."""
    if config["model_type"] != "umt5":
        raise WrongTextEncoderError(
            f"{path_name} is a T5 encoder (relative attention bias in block 0 only, as in t5-v1_1-xxl for "
            f"Flux/SD3), not umt5: Wan 2.1 reads prompts with umt5-xxl; pick a file such as {EXAMPLE_FILE}"
        )
    if config["relative_attention_num_buckets"] != COMFY_BUCKETS:
        raise T5ConfigError(
            f"{path_name} uses {config['relative_attention_num_buckets']} relative-attention buckets; ComfyUI's "
            f"T5 is fixed at {COMFY_BUCKETS} (as umt5-xxl has), so this encoder cannot run there"
        )
    if abs(config["layer_norm_epsilon"] - COMFY_EPS) > COMFY_EPS * 1e-3:
        raise T5ConfigError(
            f"{path_name} uses layer-norm epsilon {config['layer_norm_epsilon']:g}; ComfyUI's T5 layer norm is "
            f"fixed at {COMFY_EPS:g} (as umt5-xxl has), so this encoder cannot run there"
        )


def check_shapes(config: dict, shapes: dict, path_name: str = "the file") -> None:
    """Every tensor present with the shape the configuration says, and nothing else."""
    want = expected_shapes(config)
    missing = sorted(set(want) - set(shapes))
    extra = sorted(set(shapes) - set(want))
    wrong = [(k, tuple(shapes[k]), want[k]) for k in want if k in shapes and tuple(shapes[k]) != want[k]]
    problems = []
    if missing:
        problems.append(f"missing {', '.join(comfy_to_llama(k) + ' (' + k + ')' for k in missing[:4])}"
                        + (f" and {len(missing) - 4} more" if len(missing) > 4 else ""))
    if extra:
        problems.append(f"unexpected {', '.join(extra[:4])}" + (f" and {len(extra) - 4} more" if len(extra) > 4 else ""))
    for k, got, exp in wrong[:4]:
        problems.append(f"{k} is {got}, the configuration says {exp}")
    if problems:
        raise T5ConfigError(
            f"{path_name} does not match its own configuration ({describe_config(config)}): "
            + "; ".join(problems) + ". The file is damaged or was written by a faulty converter"
        )


def describe_config(config: dict) -> str:
    return (f"{config['model_type']}, width {config['d_model']}, {config['num_layers']} blocks, ffn {config['d_ff']}, "
            f"{config['num_heads']} heads x {config['d_kv']}, vocabulary {config['vocab_size']}")


# ---------------------------------------------------------------- tokenizer


def spm_model_from_metadata(metadata: dict) -> spm_proto.SpmModel | None:
    """The sentencepiece model described by ``tokenizer.ggml.*``; None when the file has no tokens."""
    tokens = metadata.get("tokenizer.ggml.tokens")
    if not tokens:
        return None
    kind = metadata.get("tokenizer.ggml.model")
    if kind not in (None, "t5"):
        raise TokenizerError(
            f"the file's tokenizer is {kind!r}, not a T5 sentencepiece (unigram) tokenizer: it is not a umt5 encoder"
        )
    n = len(tokens)
    scores = metadata.get("tokenizer.ggml.scores") or [0.0] * n
    types = metadata.get("tokenizer.ggml.token_type") or [spm_proto.NORMAL] * n
    if len(scores) != n or len(types) != n:
        raise TokenizerError(f"the file lists {n} tokens but {len(scores)} scores and {len(types)} token types: its tokenizer is damaged")
    # llama.cpp pads the list to the embedding size with unused [PADn] pieces;
    # they are not part of the sentencepiece model.
    end = n
    while end > 0 and types[end - 1] == spm_proto.UNUSED and _PAD_PIECE.match(tokens[end - 1]):
        end -= 1
    pieces = [spm_proto.SpmPiece(t, float(s), int(ty)) for t, s, ty in zip(tokens[:end], scores[:end], types[:end])]

    def token_id(key: str, default: int) -> int:
        value = metadata.get(f"tokenizer.ggml.{key}")
        return int(value) if value is not None else default

    unk_default = next((i for i, p in enumerate(pieces) if p.type == spm_proto.UNKNOWN), -1)
    m = spm_proto.SpmModel(
        pieces=pieces,
        unk_id=token_id("unknown_token_id", unk_default),
        bos_id=token_id("bos_token_id", -1),
        eos_id=token_id("eos_token_id", COMFY_EOS_ID),
        pad_id=token_id("padding_token_id", COMFY_PAD_ID),
    )
    for role in ("unk", "bos", "eos", "pad"):
        i = getattr(m, f"{role}_id")
        if 0 <= i < len(pieces):
            setattr(m, f"{role}_piece", pieces[i].piece)
    # GGUF has no flag for it: byte pieces are only there in byte-fallback models.
    m.byte_fallback = any(p.type == spm_proto.BYTE for p in pieces)
    charsmap = metadata.get("tokenizer.ggml.precompiled_charsmap")
    m.precompiled_charsmap = bytes(charsmap) if charsmap else b""
    # The charsmap is the compiled normalization; without one nothing is normalized.
    m.normalizer_name = "nmt_nfkc" if m.precompiled_charsmap else "identity"
    m.add_dummy_prefix = bool(metadata.get("tokenizer.ggml.add_space_prefix", True))
    m.remove_extra_whitespaces = bool(metadata.get("tokenizer.ggml.remove_extra_whitespaces", True))
    return m


def tokenizer_metadata(m: spm_proto.SpmModel, n_rows: int) -> dict:
    """``tokenizer.ggml.*`` values as llama.cpp's T5 converter writes them, padded to ``n_rows``."""
    if n_rows < len(m.pieces):
        raise ValueError(f"{len(m.pieces)} tokenizer pieces do not fit an embedding of {n_rows} rows")
    pad = n_rows - len(m.pieces)
    out = {
        "tokenizer.ggml.model": "t5",
        "tokenizer.ggml.tokens": [p.piece for p in m.pieces] + [f"[PAD{i}]" for i in range(1, pad + 1)],
        "tokenizer.ggml.scores": [float(p.score) for p in m.pieces] + [-1000.0] * pad,
        "tokenizer.ggml.token_type": [int(p.type) for p in m.pieces] + [spm_proto.UNUSED] * pad,
        "tokenizer.ggml.add_space_prefix": bool(m.add_dummy_prefix),
        "tokenizer.ggml.remove_extra_whitespaces": bool(m.remove_extra_whitespaces),
        "tokenizer.ggml.eos_token_id": m.eos_id,
        "tokenizer.ggml.padding_token_id": m.pad_id,
        "tokenizer.ggml.unknown_token_id": m.unk_id,
        "tokenizer.ggml.add_bos_token": False,
        "tokenizer.ggml.add_eos_token": True,
    }
    if m.precompiled_charsmap:
        out["tokenizer.ggml.precompiled_charsmap"] = m.precompiled_charsmap
    if m.bos_id >= 0:
        out["tokenizer.ggml.bos_token_id"] = m.bos_id
    return out


def check_tokenizer(m: spm_proto.SpmModel, vocab_rows: int, source: str) -> bytes:
    """Serialize ``m`` after checking it fits ComfyUI's umt5 path; returns the proto bytes."""
    import sentencepiece

    n = len(m.pieces)
    if not n <= vocab_rows <= n + MAX_UNUSED_ROWS:
        raise TokenizerError(
            f"the tokenizer from {source} has {n} pieces but the encoder's embedding has {vocab_rows} rows: "
            "they belong to different models"
        )
    if m.model_type != spm_proto.UNIGRAM:
        raise TokenizerError(f"the tokenizer from {source} is not a unigram sentencepiece model (umt5's kind)")
    proto = spm_proto.encode_model_proto(m)
    try:
        sp = sentencepiece.SentencePieceProcessor(model_proto=proto)
    except Exception as exc:  # sentencepiece raises RuntimeError with its own text
        raise TokenizerError(f"the tokenizer from {source} does not load in sentencepiece: {exc}") from None
    if sp.pad_id() != COMFY_PAD_ID or sp.eos_id() != COMFY_EOS_ID:
        raise TokenizerError(
            f"the tokenizer from {source} has pad id {sp.pad_id()} and end id {sp.eos_id()}; ComfyUI's umt5 "
            f"path pads with {COMFY_PAD_ID} and ends with {COMFY_EOS_ID} (as umt5-xxl does)"
        )
    return proto


TOKENIZER_FILE_NAMES = ("spiece.model", "tokenizer.model")


def _safetensors_spiece(path: Path) -> bytes | None:
    """ComfyUI's own umt5 files carry their tokenizer as a ``spiece_model`` tensor."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            if "spiece_model" not in f.keys():
                return None
            return f.get_tensor("spiece_model").numpy().tobytes()
    except Exception:  # not a readable safetensors file: not a candidate
        return None


def tokenizer_candidates(gguf_path: Path, folders=()) -> list[Path]:
    """Where a tokenizer for a GGUF without one is looked for, in order."""
    gguf_path = Path(gguf_path)
    out = [gguf_path.with_suffix(".spiece.model")] + [gguf_path.parent / n for n in TOKENIZER_FILE_NAMES]
    seen = set()
    for folder in [gguf_path.parent, *map(Path, folders)]:
        if folder in seen or not folder.is_dir():
            continue
        seen.add(folder)
        out.extend(sorted(p for p in folder.iterdir() if p.suffix == ".safetensors"))
    return out


def fallback_tokenizer(gguf_path: Path, vocab_rows: int, folders=()) -> tuple[bytes, str]:
    """A umt5 sentencepiece model from beside the file or from a ComfyUI umt5 .safetensors."""
    rejected = []
    for cand in tokenizer_candidates(gguf_path, folders):
        if not cand.is_file():
            continue
        raw = _safetensors_spiece(cand) if cand.suffix == ".safetensors" else cand.read_bytes()
        if raw is None:
            continue
        try:
            m = spm_proto.decode_model_proto(raw)
            return check_tokenizer(m, vocab_rows, cand.name), str(cand)
        except (spm_proto.SpmProtoError, TokenizerError) as exc:
            rejected.append(f"{cand.name}: {exc}")
    detail = (" Rejected: " + " | ".join(rejected)) if rejected else ""
    raise TokenizerError(
        f"{Path(gguf_path).name} has no tokenizer (no tokenizer.ggml.tokens) and no umt5 tokenizer with a "
        f"matching vocabulary ({vocab_rows} rows) was found: put umt5-xxl's spiece.model next to it (as "
        f"{Path(gguf_path).with_suffix('.spiece.model').name}), keep ComfyUI's umt5_xxl_*.safetensors in {WHERE}, "
        f"or use a GGUF converted with its tokenizer such as {EXAMPLE_FILE}.{detail}"
    )


# ---------------------------------------------------------------- the whole file


@dataclass
class UMT5GGUF:
    file: GGUFFile
    config: dict  # ComfyUI's umt5xxl_model_config
    names: dict[str, str]  # stored tensor name -> ComfyUI name
    spm_proto: bytes  # serialized sentencepiece model for ComfyUI's tokenizer
    tokenizer_source: str

    @property
    def path(self) -> Path:
        return self.file.path


def refuse_unless_t5(f: GGUFFile) -> None:
    kind = classify({n: t.shape for n, t in f.tensors.items()}, f.architecture)
    name = f.path.name
    if kind.kind == "umt5":
        return
    if kind.kind.startswith("wan-"):
        raise WrongTextEncoderError(
            f"{name} is a {kind.describe()} diffusion model, not a text encoder: load it with "
            f"'Load Wan I2V Model (GGUF)', and pick a umt5-xxl encoder such as {EXAMPLE_FILE} here"
        )
    arch = f" ('{f.architecture}' architecture)" if f.architecture and f"'{f.architecture}'" not in kind.describe() else ""
    raise WrongTextEncoderError(
        f"{name} is {kind.describe()}{arch}, not a umt5/T5 text encoder: Wan 2.1 needs umt5-xxl, "
        f"e.g. {EXAMPLE_FILE} in {WHERE}"
    )


def open_umt5_gguf(path: str | os.PathLike, tokenizer_folders=()) -> UMT5GGUF:
    """Read and check a umt5 encoder GGUF: ComfyUI names, config and tokenizer, or a clear refusal."""
    f = read_gguf(path)
    refuse_unless_t5(f)
    name = f.path.name
    names = comfy_names(f.tensors, name)
    shapes = {new: f.tensors[old].shape for old, new in names.items()}
    try:
        config = umt5_config_from_metadata(f.metadata, shapes)
    except T5ConfigError as exc:
        raise T5ConfigError(f"{name}: {exc}") from None
    check_buildable(config, name)
    check_shapes(config, shapes, name)
    for old in names:
        t = f.tensors[old]
        if not is_supported(t.qtype):
            raise UnsupportedQuantType(
                t.qtype,
                f"{name}: tensor {old} is stored as {type_name(t.qtype)}, which this loader cannot dequantize; "
                f"pick a umt5-xxl encoder quantized as Q8_0, Q6_K, Q5_K_M or Q4_K_M",
            )

    try:
        m = spm_model_from_metadata(f.metadata)
        if m is not None:
            proto, source = check_tokenizer(m, config["vocab_size"], "the file's metadata"), "the file's metadata"
        elif "spiece_model" in f.tensors:
            raw = bytes(f.tensors["spiece_model"].data.numpy().tobytes())
            proto = check_tokenizer(spm_proto.decode_model_proto(raw), config["vocab_size"], "its spiece_model tensor")
            source = "the file's spiece_model tensor"
        else:
            proto, source = fallback_tokenizer(f.path, config["vocab_size"], tokenizer_folders)
    except (TokenizerError, spm_proto.SpmProtoError) as exc:
        msg = str(exc)
        raise TokenizerError(msg if msg.startswith(name) else f"{name}: {msg}") from None
    return UMT5GGUF(f, config, names, proto, source)
