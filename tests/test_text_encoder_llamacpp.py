"""Load Wan Text Encoder (GGUF) on a file this package did not write.

The file is written here with gguf-py's ``GGUFWriter`` the way llama.cpp's
``convert_hf_to_gguf.py`` (``T5EncoderModel``) writes a umt5 encoder: architecture
``t5encoder``, its ``t5encoder.*`` size keys, tensors named by gguf-py's T5ENCODER
tensor map (``token_embd``, ``enc.blk.N.attn_q`` ..., a relative-attention bias
``enc.blk.N.attn_rel_b`` in every layer), the sentencepiece vocabulary in
``tokenizer.ggml.*`` padded to the embedding's row count with UNUSED ``[PADn]``
pieces (named by row, score -10000), and the normalizer fields read from the model
proto with protobuf, as the converter does. The weights come from a transformers
``UMT5EncoderModel`` (small config, random weights).

Oracles: transformers' ``UMT5EncoderModel`` hidden states on the same weights (in
float32; for F16 and Q8_0 files on the weights gguf-py's dequantizer gives back), and
ComfyUI's stock umt5 tokenizer on the trained sentencepiece model.
"""

from __future__ import annotations

import io

import gguf
import numpy as np
import pytest
import sentencepiece
import torch

pytestmark = pytest.mark.comfy

# Small, but every part of umt5: gated GELU, a bias table per layer, 32 buckets up to distance 128.
SIZES = dict(d_model=128, d_ff=96, num_layers=3, num_heads=4, d_kv=16, relative_attention_num_buckets=32,
             relative_attention_max_distance=128)
CORPUS = (
    "a girl turns her head slowly and smiles at the camera",
    "the camera pans left across a quiet street at sunset",
    "her long hair and dress flutter gently in the wind",
    "waves crash on the rocks and the sea foam drifts away",
    "cherry blossom petals fall and swirl around the dancer",
    "snow falls quietly over the village while chimneys puff smoke",
    "一个女孩在风中慢慢转身，头发飘动，镜头缓慢推进",
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止",
)
TEXTS = (
    "a girl turns her head slowly and smiles at the camera",
    "  the  wind   blows,\ther hair ＡＢＣ quokka!  ",
    "镜头缓慢推进 and the petals swirl",
    " ".join([CORPUS[0]] * 50),  # more than 512 tokens: no truncation
)
# llama.cpp's SentencePieceTokenTypes.
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


@pytest.fixture(scope="module")
def spm_model() -> bytes:
    buf = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 8), model_writer=buf, model_type="unigram", vocab_size=180,
        hard_vocab_limit=False, character_coverage=1.0, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        num_threads=1, minloglevel=2)
    return buf.getvalue()


@pytest.fixture(scope="module")
def hf_encoder(spm_model):
    from transformers import UMT5Config, UMT5EncoderModel

    pieces = sentencepiece.SentencePieceProcessor(model_proto=spm_model).vocab_size()
    rows = (pieces // 64 + 2) * 64  # padded past the tokenizer, as umt5-xxl's 256384 rows
    config = UMT5Config(vocab_size=rows, feed_forward_proj="gated-gelu", dropout_rate=0.0, layer_norm_epsilon=1e-6,
                        is_encoder_decoder=False, **SIZES)
    torch.manual_seed(11)
    model = UMT5EncoderModel(config).eval().float()
    assert rows - pieces >= 64
    return model


# -- the file, as llama.cpp's converter writes it -------------------------------------

def _vocab(writer: gguf.GGUFWriter, spm_model: bytes, rows: int) -> None:
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(spm_model)
    assert proto.trainer_spec.model_type == 1  # unigram
    sp = sentencepiece.SentencePieceProcessor(model_proto=spm_model)
    tokens = [f"[PAD{i}]".encode() for i in range(rows)]
    scores = [-10000.0] * rows
    types = [UNUSED] * rows
    for i in range(sp.vocab_size()):
        tokens[i] = sp.id_to_piece(i).encode("utf-8")
        scores[i] = sp.get_score(i)
        types[i] = (UNKNOWN if sp.is_unknown(i) else CONTROL if sp.is_control(i) else
                    UNUSED if sp.is_unused(i) else BYTE if sp.is_byte(i) else NORMAL)
    writer.add_tokenizer_model("t5")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_add_space_prefix(proto.normalizer_spec.add_dummy_prefix)
    writer.add_remove_extra_whitespaces(proto.normalizer_spec.remove_extra_whitespaces)
    writer.add_precompiled_charsmap(proto.normalizer_spec.precompiled_charsmap)
    # gguf.SpecialVocab's reading of umt5's special_tokens_map.json.
    writer.add_eos_token_id(1)
    writer.add_unk_token_id(2)
    writer.add_pad_token_id(0)


def _stored(name: str, values: np.ndarray, out_type: str):
    """(data, raw_dtype) as the converter stores a tensor for ``--outtype``: vectors stay F32; what does
    not split into whole Q8_0 blocks falls back to F16."""
    Q = gguf.GGMLQuantizationType
    if out_type == "F32" or values.ndim <= 1:
        return values.astype(np.float32), None
    if out_type == "F16" or values.shape[-1] % gguf.GGML_QUANT_SIZES[Q.Q8_0][0]:
        return values.astype(np.float16), None
    return gguf.quants.quantize(values, Q.Q8_0), Q.Q8_0


def write_llamacpp_umt5(path, model, spm_model: bytes, out_type: str) -> dict[str, str]:
    """The encoder as llama.cpp's converter writes it; returns the GGUF name of each HF tensor."""
    cfg = model.config
    writer = gguf.GGUFWriter(str(path), "t5encoder")
    writer.add_name("umt5 tiny (llama.cpp layout, random weights)")
    writer.add_context_length(512)  # UMT5 configs have no n_positions: the converter's default
    writer.add_embedding_length(cfg.d_model)
    writer.add_feed_forward_length(cfg.d_ff)
    writer.add_block_count(cfg.num_layers)
    writer.add_head_count(cfg.num_heads)
    writer.add_key_length(cfg.d_kv)
    writer.add_value_length(cfg.d_kv)
    writer.add_layer_norm_eps(cfg.layer_norm_epsilon)
    writer.add_relative_attn_buckets_count(cfg.relative_attention_num_buckets)
    writer.add_layer_norm_rms_eps(cfg.layer_norm_epsilon)
    writer.add_file_type({"F32": gguf.LlamaFileType.ALL_F32, "F16": gguf.LlamaFileType.MOSTLY_F16,
                          "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[out_type])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _vocab(writer, spm_model, cfg.vocab_size)
    tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH.T5ENCODER, cfg.num_layers)
    names = {}
    for name, tensor in model.state_dict().items():
        if name == "encoder.embed_tokens.weight":
            continue  # the tied copy of shared.weight: the converter keeps the first one only
        new = tmap.get_name(name, try_suffixes=(".weight", ".bias"))
        assert new is not None, name
        data, raw = _stored(new, tensor.detach().numpy(), out_type)
        writer.add_tensor(new, data, raw_dtype=raw)
        names[name] = new
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return names


def weights_as_stored(path, names: dict[str, str]) -> dict[str, torch.Tensor]:
    """HF name -> the tensor gguf-py's reader and dequantizer give back from the file."""
    reader = gguf.GGUFReader(str(path))
    by_name = {t.name: t for t in reader.tensors}
    out = {}
    for hf_name, name in names.items():
        t = by_name[name]
        values = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type)
        shape = tuple(int(s) for s in reversed(t.shape.tolist()))
        out[hf_name] = torch.from_numpy(np.array(values, dtype=np.float32).reshape(shape))
    out["encoder.embed_tokens.weight"] = out["shared.weight"]
    return out


# -- the comparison ---------------------------------------------------------------------

@pytest.fixture
def installed(comfy, comfy_base, tmp_path):
    """Write a file into the session's models/text_encoders/ and remove it afterwards."""
    import folder_paths

    folder = comfy_base / "models" / "text_encoders"
    folder.mkdir(parents=True, exist_ok=True)
    written = []

    def install(name: str):
        written.append(folder / name)
        return folder / name

    yield install
    for path in written:
        path.unlink(missing_ok=True)
    folder_paths.filename_list_cache.clear()


def stock_tokens(spm_model: bytes, text: str):
    """ComfyUI's own umt5 tokenizer on the trained sentencepiece model."""
    import comfy.text_encoders.wan

    tok = comfy.text_encoders.wan.WanT5Tokenizer(tokenizer_data={"spiece_model": spm_model})
    return tok.tokenize_with_weights(text)


def hf_hidden_states(model, ids: list[int]) -> tuple[torch.Tensor, int]:
    n = ids.index(1) + 1  # up to and including the end token; the rest is padding
    mask = torch.zeros(1, len(ids), dtype=torch.long)
    mask[0, :n] = 1
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), attention_mask=mask).last_hidden_state
    return out, n


@pytest.mark.parametrize("out_type,atol", [("F32", 2e-5), ("F16", 2e-5), ("Q8_0", 2e-5)])
def test_node_matches_transformers_umt5_on_a_llamacpp_style_file(comfy, installed, hf_encoder, spm_model,
                                                                 out_type, atol):
    import folder_paths

    name = f"umt5-llamacpp-style-{out_type}.gguf"
    path = installed(name)
    names = write_llamacpp_umt5(path, hf_encoder, spm_model, out_type)
    assert "enc.blk.2.attn_rel_b.weight" in names.values() and "token_embd.weight" in names.values()
    reader = gguf.GGUFReader(str(path))
    tokens = reader.fields["tokenizer.ggml.tokens"]
    rows = hf_encoder.config.vocab_size
    assert len(tokens.data) == rows and bytes(tokens.parts[tokens.data[-1]]) == f"[PAD{rows - 1}]".encode()
    folder_paths.filename_list_cache.clear()

    clip = comfy.node_class("TwoStageI2V_TextEncoderGGUF").execute(clip_name=name)[0]
    reference = hf_encoder
    if out_type != "F32":  # the oracle runs on the weights the file really holds
        reference = type(hf_encoder)(hf_encoder.config).eval().float()
        reference.load_state_dict(weights_as_stored(path, names))
        moved = max(float((a - b).abs().max()) for a, b in zip(reference.state_dict().values(),
                                                               hf_encoder.state_dict().values()))
        assert moved > 0, "the stored weights are the float ones: the file is not really F16/Q8_0"
    for text in TEXTS:
        tokens = clip.tokenize(text)
        assert tokens == stock_tokens(spm_model, text), text
        ids = [t[0] for t in tokens["umt5xxl"][0]]
        assert len(ids) >= 512 and set(ids) - {0, 1, 2}
        cond = clip.encode_from_tokens(tokens, return_pooled=True, return_dict=True)["cond"]
        expected, n = hf_hidden_states(reference, ids)
        assert cond.dtype == torch.float32 and cond.shape == (1, len(ids), SIZES["d_model"])
        assert torch.isfinite(expected).all() and float(expected[0, :n].abs().mean()) > 1e-2
        torch.testing.assert_close(cond[:, :n], expected[:, :n], rtol=1e-5, atol=atol)
        assert torch.count_nonzero(cond[0, n:]) == 0  # padding rows zeroed, as ComfyUI's umt5 does
