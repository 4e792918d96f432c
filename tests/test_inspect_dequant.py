"""`inspect` and `dequant` verbs on GGUFs converted from the tiny ComfyUI-built models."""

from __future__ import annotations

import json

import gguf
import numpy as np
import pytest

from twostage_i2v.cli import main
from twostage_i2v.models.wan_convert import write_model_gguf

pytestmark = pytest.mark.comfy


@pytest.fixture(scope="module")
def ggufs(tiny_models, tmp_path_factory):
    from safetensors.torch import load_file

    out = tmp_path_factory.mktemp("inspect")
    files = {}
    for key, recipe in (("wan_i2v", "Q4_K_M"), ("wan_t2v", "Q8_0")):
        files[key] = out / f"{key}_{recipe}.gguf"
        write_model_gguf(files[key], load_file(str(tiny_models[key])), recipe)
    return files


def run_json(capsys, *argv):
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_inspect_reports_i2v_with_evidence(ggufs, capsys):
    s = run_json(capsys, "inspect", str(ggufs["wan_i2v"]), "--json")
    assert s["kind"] == "wan-i2v" and s["architecture"] == "wan"
    ev = s["evidence"]
    assert (ev["in_dim"], ev["dim"], ev["layers"], ev["img_emb"]) == (36, 128, 2, True)
    reader = gguf.GGUFReader(str(ggufs["wan_i2v"]))
    assert s["parameters"] == sum(int(t.n_elements) for t in reader.tensors)
    assert s["file_size"] == ggufs["wan_i2v"].stat().st_size
    data_bytes = sum(int(t.n_bytes) for t in reader.tensors)
    assert s["bits_per_weight"] == pytest.approx(8 * data_bytes / s["parameters"], abs=1e-3)
    hist = {}
    for t in reader.tensors:
        hist[t.tensor_type.name] = hist.get(t.tensor_type.name, 0) + 1
    assert {k: v["tensors"] for k, v in s["tensor_types"].items()} == hist
    assert "Q4_K" in hist


def test_inspect_reports_t2v(ggufs, capsys):
    s = run_json(capsys, "inspect", str(ggufs["wan_t2v"]), "--json")
    assert s["kind"] == "wan-t2v"
    assert (s["evidence"]["in_dim"], s["evidence"]["img_emb"]) == (16, False)
    assert main(["inspect", str(ggufs["wan_t2v"])]) == 0
    assert "Wan 2.1 T2V" in capsys.readouterr().out


def test_inspect_refuses_non_gguf(tmp_path, capsys):
    bad = tmp_path / "model.gguf"
    bad.write_text("not a model")
    assert main(["inspect", str(bad)]) == 1
    assert "model.gguf is not a GGUF file" in capsys.readouterr().err


def test_dequant_writes_logical_shape_float32_equal_to_reference(ggufs, tmp_path, capsys):
    names = ["blocks.0.ffn.2.weight", "patch_embedding.weight", "blocks.1.self_attn.q.weight"]
    argv = ["dequant", str(ggufs["wan_i2v"]), "--out", str(tmp_path)]
    for n in names:
        argv += ["--tensor", n]
    assert main(argv) == 0
    reader = gguf.GGUFReader(str(ggufs["wan_i2v"]))
    by_name = {t.name: t for t in reader.tensors}
    for n in names:
        got = np.load(tmp_path / f"{n}.npy")
        assert got.dtype == np.float32
        ref = gguf.quants.dequantize(by_name[n].data, by_name[n].tensor_type).astype(np.float32)
        if n == "patch_embedding.weight":
            assert got.shape == (128, 36, 1, 2, 2)
        np.testing.assert_array_equal(got.reshape(ref.shape), ref)


def test_dequant_names_missing_tensor(ggufs, tmp_path, capsys):
    assert main(["dequant", str(ggufs["wan_i2v"]), "--tensor", "nope.weight", "--out", str(tmp_path)]) == 1
    assert "has no tensor named nope.weight" in capsys.readouterr().err


def test_inspect_reports_umt5_with_its_configuration(tiny_models, capsys):
    from twostage_i2v.tiny import umt5 as tiny_umt5

    path = tiny_models["umt5_q8_0"]
    s = run_json(capsys, "inspect", str(path), "--json")
    assert (s["kind"], s["architecture"]) == ("umt5", "t5encoder")
    expected = dict(tiny_umt5.TINY_CONFIG)
    reader = gguf.GGUFReader(str(path))
    # The file's token list is padded to the embedding's rows, as llama.cpp writes umt5-xxl.
    expected["vocab_size"] = len(reader.fields["tokenizer.ggml.tokens"].data)
    assert expected["vocab_size"] == next(t.shape[-1] for t in reader.tensors if t.name == "token_embd.weight")
    assert {k: s["config"][k] for k in expected} == expected
    assert main(["inspect", str(path)]) == 0
    assert "kind: umt5" in capsys.readouterr().out
