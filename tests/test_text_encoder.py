"""Load Wan Text Encoder (GGUF): umt5 from a GGUF, sized by the file, tokenizer from its metadata.

Oracles: sentencepiece itself (the trained tokenizer), gguf-py's tensor name
map and dequantizer, ComfyUI's umt5 config JSON and T5 class, and ComfyUI's
stock umt5 CLIP built with the config override.
"""

from __future__ import annotations

import json

import gguf
import numpy as np
import pytest
import sentencepiece
import torch

from twostage_i2v.headless import inprocess
from twostage_i2v.models import spm_proto, umt5_file
from twostage_i2v.tiny import umt5 as tiny_umt5
from twostage_i2v.gguf.reader import GGUFReadError, read_metadata

TINY = tiny_umt5.TINY_CONFIG

TEXTS = (
    "a girl turns her head slowly and smiles at the camera",
    tiny_umt5.WAN_NEGATIVE_PROMPT,
    "  the  wind   blows,\ther hair ＡＢＣ ① zebra quokka!  ",
    "镜头缓慢推进 and the dragon takes off",
    "",
)


@pytest.fixture(scope="module")
def trained_proto() -> bytes:
    return tiny_umt5.train_tiny_tokenizer()


@pytest.fixture(scope="module")
def tok(trained_proto) -> spm_proto.SpmModel:
    return spm_proto.decode_model_proto(trained_proto)


@pytest.fixture(scope="module")
def config(tok) -> dict:
    return tiny_umt5.tiny_config(tiny_umt5.embedding_rows(len(tok.pieces)))


def random_tensors(config: dict, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {k: (rng.standard_normal(s) * 0.1).astype(np.float32) for k, s in umt5_file.expected_shapes(config).items()}


@pytest.fixture(scope="module")
def core_file(tmp_path_factory, config, tok):
    """A llama.cpp-style tiny umt5 GGUF written without ComfyUI (numpy weights)."""
    path = tmp_path_factory.mktemp("t5") / "umt5-core-F32.gguf"
    return tiny_umt5.write_t5_gguf(path, random_tensors(config), config, tok, "F32")


# ------------------------------------------------------------------ sentencepiece proto


@pytest.mark.core
def test_proto_decodes_what_the_trainer_wrote(tok):
    assert (tok.model_type, tok.pad_id, tok.eos_id, tok.unk_id, tok.bos_id) == (spm_proto.UNIGRAM, 0, 1, 2, -1)
    assert [(p.piece, p.type) for p in tok.pieces[:3]] == [("<pad>", spm_proto.CONTROL), ("</s>", spm_proto.CONTROL), ("<unk>", spm_proto.UNKNOWN)]
    assert tok.normalizer_name == "nmt_nfkc" and len(tok.precompiled_charsmap) > 1000
    assert tok.add_dummy_prefix and tok.remove_extra_whitespaces and tok.escape_whitespaces
    assert 300 <= len(tok.pieces) <= 500


@pytest.mark.core
def test_proto_round_trip_tokenizes_like_the_trained_model(trained_proto, tok):
    rebuilt = spm_proto.encode_model_proto(tok)
    assert spm_proto.decode_model_proto(rebuilt) == tok
    a = sentencepiece.SentencePieceProcessor(model_proto=trained_proto)
    b = sentencepiece.SentencePieceProcessor(model_proto=rebuilt)
    assert b.get_piece_size() == a.get_piece_size()
    assert [b.id_to_piece(i) for i in range(b.get_piece_size())] == [a.id_to_piece(i) for i in range(a.get_piece_size())]
    assert (b.pad_id(), b.eos_id(), b.unk_id(), b.bos_id()) == (a.pad_id(), a.eos_id(), a.unk_id(), a.bos_id())
    for text in TEXTS:
        assert b.encode(text) == a.encode(text), text
    # The Chinese negative prompt is made of real pieces, not unknowns.
    assert a.unk_id() not in a.encode(tiny_umt5.WAN_NEGATIVE_PROMPT)


@pytest.mark.core
def test_proto_flags_and_negative_ids_survive(tok):
    m = spm_proto.SpmModel(pieces=tok.pieces, unk_id=2, bos_id=-1, eos_id=1, pad_id=0, precompiled_charsmap=b"",
                           normalizer_name="identity", add_dummy_prefix=False, remove_extra_whitespaces=False)
    back = spm_proto.decode_model_proto(spm_proto.encode_model_proto(m))
    assert back == m
    sp = sentencepiece.SentencePieceProcessor(model_proto=spm_proto.encode_model_proto(m))
    # No dummy prefix and no whitespace folding: spaces stay as they are.
    assert sp.encode("a  b", out_type=str)[0] != "▁a"


@pytest.mark.core
def test_proto_refuses_non_models():
    with pytest.raises(spm_proto.SpmProtoError, match="no sentencepiece pieces"):
        spm_proto.decode_model_proto(b"")
    with pytest.raises(spm_proto.SpmProtoError, match="wire type|truncated"):
        spm_proto.decode_model_proto(b"GGUF\x03\x00\x00\x00")


# ------------------------------------------------------------------ names and config


@pytest.mark.core
def test_names_match_gguf_py_tensor_map(config):
    tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH.T5ENCODER, config["num_layers"])
    for name in umt5_file.expected_shapes(config):
        llama = tmap.get_name(name, try_suffixes=(".weight",))
        assert llama is not None, name
        assert umt5_file.comfy_to_llama(name) == llama
        assert umt5_file.llama_to_comfy(llama) == name
    assert umt5_file.llama_to_comfy("enc.blk.3.ffn_gate.weight") == "encoder.block.3.layer.1.DenseReluDense.wi_0.weight"
    assert umt5_file.llama_to_comfy("enc.blk.0.ffn_up.weight", gated=False) == "encoder.block.0.layer.1.DenseReluDense.wi.weight"


@pytest.mark.core
def test_comfy_names_both_namings():
    llama = ["token_embd.weight", "enc.blk.0.attn_q.weight", "enc.output_norm.weight", "dec.blk.0.attn_q.weight", "output.weight"]
    assert umt5_file.comfy_names(llama) == {
        "token_embd.weight": "shared.weight",
        "enc.blk.0.attn_q.weight": "encoder.block.0.layer.0.SelfAttention.q.weight",
        "enc.output_norm.weight": "encoder.final_layer_norm.weight",
    }
    hf = ["umt5xxl.transformer.encoder.embed_tokens.weight", "umt5xxl.transformer.encoder.block.0.layer.1.DenseReluDense.wo.weight",
          "decoder.block.0.layer.0.SelfAttention.q.weight", "lm_head.weight"]
    assert umt5_file.comfy_names(hf) == {
        "umt5xxl.transformer.encoder.embed_tokens.weight": "shared.weight",
        "umt5xxl.transformer.encoder.block.0.layer.1.DenseReluDense.wo.weight": "encoder.block.0.layer.1.DenseReluDense.wo.weight",
    }
    with pytest.raises(umt5_file.WrongTextEncoderError, match=r"x\.gguf has tensors a umt5 encoder does not have \(enc\.blk\.0\.attn_qkv\.weight\)"):
        umt5_file.comfy_names(["token_embd.weight", "enc.blk.0.attn_qkv.weight"], "x.gguf")


@pytest.mark.core
def test_config_from_metadata(core_file, config):
    meta = read_metadata(core_file)
    assert meta["general.architecture"] == "t5encoder"
    got = umt5_file.umt5_config_from_metadata(meta)
    assert got == {**config, "n_positions": tiny_umt5.CONTEXT_LENGTH}
    assert umt5_file.expected_shapes(got) == umt5_file.expected_shapes(config)


@pytest.mark.core
def test_config_of_real_umt5_xxl_metadata_matches_comfyui_json():
    """The keys llama.cpp writes for umt5-xxl give ComfyUI's own umt5_config_xxl.json."""
    ref = json.loads((inprocess.comfyui_root() / "comfy/text_encoders/umt5_config_xxl.json").read_text())
    meta = {
        "general.architecture": "t5encoder",
        "t5encoder.context_length": 512,
        "t5encoder.embedding_length": 4096,
        "t5encoder.feed_forward_length": 10240,
        "t5encoder.block_count": 24,
        "t5encoder.attention.head_count": 64,
        "t5encoder.attention.key_length": 64,
        "t5encoder.attention.value_length": 64,
        "t5encoder.attention.layer_norm_epsilon": float(np.float32(1e-6)),
        "t5encoder.attention.relative_buckets_count": 32,
        "tokenizer.ggml.tokens": [f"t{i}" for i in range(256384)],
    }
    got = umt5_file.umt5_config_from_metadata(meta)
    for key in ("d_ff", "d_kv", "d_model", "num_heads", "num_layers", "layer_norm_epsilon", "model_type",
                "is_gated_act", "dense_act_fn", "vocab_size", "relative_attention_num_buckets"):
        assert got[key] == ref[key], key
    assert 5.6e9 < umt5_file.parameter_count(got) < 5.8e9


@pytest.mark.core
def test_config_from_shapes_for_comfy_named_file(tmp_path, config, tok):
    path = tiny_umt5.write_t5_gguf(tmp_path / "umt5-comfy.gguf", random_tensors(config), config, tok, "F32", arch="t5", naming="comfy")
    u = umt5_file.open_umt5_gguf(path)
    assert u.config == config
    assert u.tokenizer_source == "the file's spiece_model tensor"
    with pytest.raises(umt5_file.T5ConfigError, match=r"no T5 encoder configuration: architecture 't5' has no t5\.embedding_length"):
        umt5_file.umt5_config_from_metadata(read_metadata(path))
    assert umt5_file.umt5_config_from_file(u.file) == config
    assert set(u.names.values()) == set(umt5_file.expected_shapes(config))


# ------------------------------------------------------------------ tokenizer from metadata


@pytest.mark.core
def test_tokenizer_rebuilt_from_metadata_equals_trained(core_file, trained_proto, config, tok):
    u = umt5_file.open_umt5_gguf(core_file)
    assert u.tokenizer_source == "the file's metadata"
    meta = read_metadata(core_file)
    assert len(meta["tokenizer.ggml.tokens"]) == config["vocab_size"] > len(tok.pieces)
    assert meta["tokenizer.ggml.tokens"][-1] == f"[PAD{config['vocab_size'] - len(tok.pieces)}]"
    a = sentencepiece.SentencePieceProcessor(model_proto=trained_proto)
    b = sentencepiece.SentencePieceProcessor(model_proto=u.spm_proto)
    assert b.get_piece_size() == a.get_piece_size()
    for text in TEXTS:
        assert b.encode(text) == a.encode(text), text
        for word in text.split(" "):  # ComfyUI tokenizes word by word
            assert b.encode(word) == a.encode(word), word


@pytest.mark.core
def test_byte_fallback_tokenizer_survives_gguf_metadata(tmp_path):
    proto = tiny_umt5.train_tiny_tokenizer(vocab_size=700, byte_fallback=True)
    m = spm_proto.decode_model_proto(proto)
    assert m.byte_fallback and sum(p.type == spm_proto.BYTE for p in m.pieces) == 256
    cfg = tiny_umt5.tiny_config(tiny_umt5.embedding_rows(len(m.pieces)))
    path = tiny_umt5.write_t5_gguf(tmp_path / "umt5-bytes.gguf", random_tensors(cfg), cfg, m, "F32")
    rebuilt = umt5_file.open_umt5_gguf(path).spm_proto
    a = sentencepiece.SentencePieceProcessor(model_proto=proto)
    b = sentencepiece.SentencePieceProcessor(model_proto=rebuilt)
    for text in (*TEXTS, "quokka ☃ 𝄞 ß"):
        assert b.encode(text) == a.encode(text), text
    assert a.unk_id() not in a.encode("☃ 𝄞")  # unseen characters went to byte pieces, not <unk>


@pytest.mark.core
def test_file_without_tokenizer_uses_a_matching_spiece_model(tmp_path, config, tok, trained_proto):
    path = tiny_umt5.write_t5_gguf(tmp_path / "umt5-notok.gguf", random_tensors(config), config, None, "F32")
    with pytest.raises(umt5_file.TokenizerError, match=r"umt5-notok\.gguf has no tokenizer \(no tokenizer\.ggml\.tokens\) and no umt5 tokenizer with a matching vocabulary \(384 rows\) was found"):
        umt5_file.open_umt5_gguf(path)

    # A tokenizer whose vocabulary does not fit the embedding is passed over, and named.
    big = {**config, "vocab_size": 1024}
    (tmp_path / "wide").mkdir()
    wide = tiny_umt5.write_t5_gguf(tmp_path / "wide" / "umt5-wide.gguf", random_tensors(big), big, None, "F32")
    (tmp_path / "wide" / "umt5-wide.spiece.model").write_bytes(trained_proto)
    with pytest.raises(umt5_file.TokenizerError, match=rf"Rejected: umt5-wide\.spiece\.model: the tokenizer from umt5-wide\.spiece\.model has {len(tok.pieces)} pieces but the encoder's embedding has 1024 rows: they belong to different models"):
        umt5_file.open_umt5_gguf(wide)

    (tmp_path / "spiece.model").write_bytes(trained_proto)
    u = umt5_file.open_umt5_gguf(path)
    assert u.tokenizer_source == str(tmp_path / "spiece.model")
    a = sentencepiece.SentencePieceProcessor(model_proto=trained_proto)
    b = sentencepiece.SentencePieceProcessor(model_proto=u.spm_proto)
    assert [b.encode(t) for t in TEXTS] == [a.encode(t) for t in TEXTS]


@pytest.mark.core
def test_file_without_tokenizer_uses_comfyui_safetensors_spiece(tmp_path, config, trained_proto):
    from safetensors.torch import save_file

    path = tiny_umt5.write_t5_gguf(tmp_path / "umt5-notok.gguf", random_tensors(config), config, None, "F32")
    other = tmp_path / "te"
    other.mkdir()
    save_file({"spiece_model": torch.frombuffer(bytearray(trained_proto), dtype=torch.uint8)}, str(other / "umt5_xxl_fp16.safetensors"))
    u = umt5_file.open_umt5_gguf(path, tokenizer_folders=[other])
    assert u.tokenizer_source == str(other / "umt5_xxl_fp16.safetensors")
    assert spm_proto.decode_model_proto(u.spm_proto).pieces == spm_proto.decode_model_proto(trained_proto).pieces


# ------------------------------------------------------------------ refusals


def write_gguf(path, arch, tensors: dict, metadata: dict | None = None):
    w = gguf.GGUFWriter(str(path), arch)
    for k, v in (metadata or {}).items():
        if isinstance(v, list):
            w.add_array(k, v)
        else:
            w.add_uint32(k, v)
    for name, value in tensors.items():
        w.add_tensor(name, np.asarray(value, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def wan_gguf(path):
    z = np.zeros
    return write_gguf(path, "wan", {
        "patch_embedding.weight": z((128, 36 * 4)),
        "blocks.0.self_attn.q.weight": z((128, 128)),
        "img_emb.proj.1.weight": z((128, 1280)),
    }, {"comfy.gguf.orig_shape.patch_embedding.weight": [128, 36, 1, 2, 2]})


def llm_gguf(path):
    z = np.zeros
    return write_gguf(path, "llama", {"token_embd.weight": z((64, 32)), "blk.0.attn_q.weight": z((32, 32)), "output_norm.weight": z(32)},
                      {"llama.block_count": 1, "llama.embedding_length": 32})


def clip_gguf(path):
    z = np.zeros
    return write_gguf(path, "clip", {"text_model.embeddings.token_embedding.weight": z((64, 32)),
                                     "text_model.encoder.layers.0.self_attn.q_proj.weight": z((32, 32))})


REFUSALS = {
    "wan": (wan_gguf, r"wan-i2v\.gguf is a Wan 2\.1 I2V .* diffusion model, not a text encoder: load it with 'Load Wan I2V Model \(GGUF\)', and pick a umt5-xxl encoder such as umt5-xxl-encoder-Q8_0\.gguf here"),
    "llm": (llm_gguf, r"llm\.gguf is a language model \(LLM\) \('llama' architecture\), not a umt5/T5 text encoder: Wan 2\.1 needs umt5-xxl"),
    "clip": (clip_gguf, r"clip\.gguf is a CLIP text encoder \('clip' architecture\), not a umt5/T5 text encoder"),
}


@pytest.mark.core
@pytest.mark.parametrize("kind", sorted(REFUSALS))
def test_refuses_other_models(tmp_path, kind):
    make, message = REFUSALS[kind]
    name = {"wan": "wan-i2v.gguf", "llm": "llm.gguf", "clip": "clip.gguf"}[kind]
    with pytest.raises(umt5_file.WrongTextEncoderError, match=message):
        umt5_file.open_umt5_gguf(make(tmp_path / name))


@pytest.mark.core
def test_refuses_non_gguf(tmp_path):
    path = tmp_path / "umt5_xxl_fp16.gguf"
    path.write_bytes(b'{"__metadata__": {}}' + b"\0" * 64)
    with pytest.raises(GGUFReadError, match=r"umt5_xxl_fp16\.gguf is not a GGUF file \(it starts with b'\{\"__', not b'GGUF'\)"):
        umt5_file.open_umt5_gguf(path)


@pytest.mark.core
def test_refuses_t5_that_is_not_umt5(tmp_path, config, tok):
    tensors = random_tensors(config)
    del tensors["encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight"]
    path = tiny_umt5.write_t5_gguf(tmp_path / "t5xxl-Q8_0.gguf", tensors, config, tok, "F32")
    with pytest.raises(umt5_file.WrongTextEncoderError, match=r"t5xxl-Q8_0\.gguf is a T5 encoder \(relative attention bias in block 0 only.*not umt5"):
        umt5_file.open_umt5_gguf(path)


@pytest.mark.core
@pytest.mark.parametrize("key,value,message", [
    ("t5encoder.attention.relative_buckets_count", 64, r"uses 64 relative-attention buckets; ComfyUI's T5 is fixed at 32"),
    ("t5encoder.attention.layer_norm_rms_epsilon", 1e-5, r"uses layer-norm epsilon 1e-05; ComfyUI's T5 layer norm is fixed at 1e-06"),
    ("t5encoder.feed_forward_length", 256, r"does not match its own configuration .*encoder\.block\.0\.layer\.1\.DenseReluDense\.wi_0\.weight "
     rf"is \({TINY['d_ff']}, {TINY['d_model']}\), the configuration says \(256, {TINY['d_model']}\)"),
    ("t5encoder.attention.value_length", 8, rf"key width {TINY['d_kv']} and value width 8 differ"),
    ("tokenizer.ggml.model", "gpt2", r"tokenizer is 'gpt2', not a T5 sentencepiece \(unigram\) tokenizer"),
])
def test_refuses_configs_comfyui_cannot_build(tmp_path, config, tok, key, value, message):
    path = tiny_umt5.write_t5_gguf(tmp_path / "bad.gguf", random_tensors(config), config, tok, "F32", metadata={key: value})
    with pytest.raises(umt5_file.WrongTextEncoderError, match=r"bad\.gguf.*" + message):
        umt5_file.open_umt5_gguf(path)


@pytest.mark.core
def test_refuses_quant_types_without_dequantizer(tmp_path, monkeypatch, config, tok):
    from twostage_i2v.gguf import quantize

    q81 = gguf.GGMLQuantizationType.Q8_1
    block, size = gguf.GGML_QUANT_SIZES[q81]
    monkeypatch.setattr(quantize, "quantize", lambda v, q: np.zeros((*v.shape[:-1], v.shape[-1] // block * size), np.uint8))
    path = tiny_umt5.write_t5_gguf(tmp_path / "umt5-Q8_1.gguf", random_tensors(config), config, tok, "Q8_1")
    with pytest.raises(ValueError, match=r"umt5-Q8_1\.gguf: tensor token_embd\.weight is stored as Q8_1, which this loader cannot dequantize; pick .*\(supported types: F32, "):
        umt5_file.open_umt5_gguf(path)


# ------------------------------------------------------------------ in ComfyUI


@pytest.fixture(scope="module")
def tiny_te(comfy, comfy_base):
    from twostage_i2v.tiny import models as tiny_models

    return tiny_models.install_into(comfy_base, ["umt5_f32", "umt5_q8_0"])


def _node(comfy):
    return comfy.node_class("TwoStageI2V_TextEncoderGGUF")


def _reference_state_dict(path) -> dict:
    """The file's weights read by gguf-py alone, named through gguf-py's own T5 tensor map."""
    reader = gguf.GGUFReader(str(path))
    blocks = int(reader.fields["t5encoder.block_count"].contents())
    tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH.T5ENCODER, blocks)
    cfg = dict(tiny_umt5.TINY_CONFIG, vocab_size=0)
    cfg["num_layers"] = blocks
    to_comfy = {}
    for t in reader.tensors:
        cfg["vocab_size"] = max(cfg["vocab_size"], int(t.shape[-1]) if t.name == "token_embd.weight" else 0)
    for name in umt5_file.expected_shapes(cfg):
        to_comfy[tmap.get_name(name, try_suffixes=(".weight",))] = name
    sd = {}
    for t in reader.tensors:
        values = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type)
        sd[to_comfy[t.name]] = torch.from_numpy(np.array(values, dtype=np.float32)).reshape(tuple(reversed(t.shape.tolist())))
    return sd, cfg


def _stock_clip(sd: dict, cfg: dict, proto: bytes):
    """ComfyUI's stock umt5 CLIP with the size override, weights through clip.load_sd."""
    import comfy.sd
    import comfy.text_encoders.wan

    class Target:
        params = {}
        clip = comfy.text_encoders.wan.te()
        tokenizer = comfy.text_encoders.wan.WanT5Tokenizer

    clip = comfy.sd.CLIP(Target(), tokenizer_data={"spiece_model": proto}, model_options={"umt5xxl_model_config": cfg})
    missing, _ = clip.load_sd(dict(sd))
    assert not missing
    return clip


def _encode(clip, text):
    tokens = clip.tokenize(text)
    out = clip.encode_from_tokens(tokens, return_pooled=True, return_dict=True)
    return tokens, out["cond"]


@pytest.mark.comfy
def test_expected_shapes_are_comfyui_t5_layout(comfy, config):
    from comfy.ops import manual_cast
    from comfy.text_encoders.t5 import T5

    with torch.device("meta"):
        model = T5(config, torch.float32, "meta", manual_cast)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == umt5_file.expected_shapes(config)


@pytest.mark.comfy
def test_node_lists_gguf_in_text_encoders(comfy, tiny_te):
    schema = _node(comfy).define_schema()
    options = schema.inputs[0].options
    assert {"umt5-tiny-encoder-F32.gguf", "umt5-tiny-encoder-Q8_0.gguf"} <= set(options)
    assert schema.inputs[1].options == ["default", "cpu"]


@pytest.mark.comfy
def test_f32_conditioning_equals_stock_path(comfy, tiny_te, trained_proto):
    from comfy.sd import CLIP

    clip = _node(comfy).execute(clip_name="umt5-tiny-encoder-F32.gguf")[0]
    assert isinstance(clip, CLIP)
    sd, cfg = _reference_state_dict(tiny_te["umt5_f32"])
    stock = _stock_clip(sd, cfg, trained_proto)
    long_text = " ".join([tiny_umt5.CORPUS[0]] * 60)
    for text in (*TEXTS, long_text):
        tok_ours, cond_ours = _encode(clip, text)
        tok_stock, cond_stock = _encode(stock, text)
        assert tok_ours == tok_stock, text
        assert cond_ours.shape == cond_stock.shape
        assert cond_ours.dtype == torch.float32
        torch.testing.assert_close(cond_ours, cond_stock, rtol=0, atol=1e-5)
    # Stock umt5 behaviour: at least 512 tokens, padded with id 0 after the end token 1, padded rows zeroed.
    tokens, cond = _encode(clip, TEXTS[0])
    ids = [t[0] for t in tokens["umt5xxl"][0]]
    n = ids.index(1) + 1
    assert len(ids) == 512 and cond.shape == (1, 512, TINY["d_model"])
    assert set(ids[n:]) == {0}
    assert torch.count_nonzero(cond[0, n:]) == 0 and torch.count_nonzero(cond[0, :n]) == n * TINY["d_model"]
    assert len(_encode(clip, long_text)[0]["umt5xxl"][0]) > 512  # no truncation, as stock


@pytest.mark.comfy
def test_q8_0_conditioning_within_quantization_error(comfy, tiny_te, trained_proto):
    clip = _node(comfy).execute(clip_name="umt5-tiny-encoder-Q8_0.gguf")[0]
    sd_q, cfg = _reference_state_dict(tiny_te["umt5_q8_0"])
    sd_f, _ = _reference_state_dict(tiny_te["umt5_f32"])
    stock_q = _stock_clip(sd_q, cfg, trained_proto)
    stock_f = _stock_clip(sd_f, cfg, trained_proto)
    for text in TEXTS:
        _, ours = _encode(clip, text)
        # The only difference from the float model is the rounding of the weights ...
        torch.testing.assert_close(ours, _encode(stock_q, text)[1], rtol=0, atol=1e-5)
        # ... which is really there (the weights stayed Q8_0 on disk) and stays small: Q8_0 moves
        # each weight matrix by about 0.5 % RMS, and this random, untrained encoder (T5 attention
        # has no 1/sqrt(d) scaling) amplifies that to 1-7 % at its output. A wrong block layout
        # or scale gives errors of order 100 %.
        ref = _encode(stock_f, text)[1]
        rel = float((ours - ref).norm() / ref.norm())
        assert 1e-4 < rel < 0.15, (text, rel)


@pytest.mark.comfy
def test_cpu_device_and_model_management(comfy, tiny_te):
    from comfy import model_management as mm
    from comfy.model_patcher import ModelPatcher

    clip = _node(comfy).execute(clip_name="umt5-tiny-encoder-F32.gguf", device="cpu")[0]
    assert clip.patcher.load_device == torch.device("cpu") and clip.patcher.offload_device == torch.device("cpu")
    assert isinstance(clip.patcher, ModelPatcher)
    _, cond = _encode(clip, TEXTS[0])
    assert any(m.model is clip.patcher for m in mm.current_loaded_models)
    _, cond2 = _encode(clip.clone(), TEXTS[0])
    torch.testing.assert_close(cond, cond2, rtol=0, atol=0)


@pytest.mark.comfy
def test_node_refuses_wrong_files(comfy, comfy_base, tiny_te):
    import folder_paths

    folder = comfy_base / "models" / "text_encoders"
    wrong = [wan_gguf(folder / "wan-i2v-tiny.gguf"), folder / "umt5_fake.gguf"]
    wrong[1].write_bytes(b"PK\x03\x04 not a gguf at all")
    folder_paths.filename_list_cache.clear()
    try:
        node = _node(comfy)
        assert {"wan-i2v-tiny.gguf", "umt5_fake.gguf"} <= set(node.define_schema().inputs[0].options)
        with pytest.raises(ValueError, match=r"wan-i2v-tiny\.gguf is a Wan 2\.1 I2V .* diffusion model, not a text encoder"):
            node.execute(clip_name="wan-i2v-tiny.gguf")
        with pytest.raises(ValueError, match=r"umt5_fake\.gguf is not a GGUF file"):
            node.execute(clip_name="umt5_fake.gguf")
    finally:  # the base dir is shared by the whole session
        for path in wrong:
            path.unlink(missing_ok=True)
        folder_paths.filename_list_cache.clear()
