"""What a GGUF file holds: kind, quant mix, size, parameters (for `inspect` and the UI)."""

from __future__ import annotations

from collections import Counter

from ..gguf.ggml_types import type_name
from ..gguf.reader import GGUFFile, read_gguf
from .kind import classify


def summarize(f: GGUFFile) -> dict:
    kind = classify({n: t.shape for n, t in f.tensors.items()}, f.architecture, f.path.name, f.metadata)
    counts: Counter = Counter()
    nbytes: Counter = Counter()
    params = 0
    for t in f.tensors.values():
        name = type_name(t.qtype)
        counts[name] += 1
        nbytes[name] += t.nbytes
        params += t.n_elements
    data_bytes = sum(nbytes.values())
    out = {
        "file": f.path.name,
        "file_size": f.file_size,
        "architecture": f.architecture,
        "kind": kind.kind,
        "description": kind.describe(),
        "evidence": kind.evidence,
        # Wan only: "2.1", "2.2" or "2.1 or 2.2"; the model ("i2v-a14b", "ti2v-5b", "vace", ...);
        # for a Wan 2.2 A14B expert "high_noise", "low_noise" or "unknown"
        "version": kind.version,
        "variant": kind.variant,
        "expert": kind.expert,
        "parameters": params,
        "bits_per_weight": round(8 * data_bytes / params, 3) if params else None,
        "tensor_types": {k: {"tensors": counts[k], "bytes": nbytes[k]} for k in sorted(counts, key=lambda k: -nbytes[k])},
    }
    if kind.kind == "umt5":
        from .umt5_file import umt5_config_from_metadata

        try:
            out["config"] = umt5_config_from_metadata(f.metadata)
        except ValueError as exc:
            out["config_error"] = str(exc)
    return out


def summarize_file(path) -> dict:
    return summarize(read_gguf(path))


def format_summary(s: dict) -> str:
    lines = [
        f"{s['file']}: {s['description']}",
        f"  kind: {s['kind']}   architecture: {s['architecture']}"
        + (f"   Wan version: {s['version']}" if s.get("version") else "")
        + (f"   expert: {s['expert']}" if s.get("expert") else ""),
        f"  evidence: " + ", ".join(f"{k}={v}" for k, v in s["evidence"].items() if v is not None),
        f"  parameters: {s['parameters']:,}   file size: {s['file_size']:,} bytes   bits per weight: {s['bits_per_weight']}",
        "  tensor types:",
    ]
    for name, v in s["tensor_types"].items():
        lines.append(f"    {name:<6} {v['tensors']:>5} tensors {v['bytes']:>15,} bytes")
    if "config" in s:
        lines.append("  config: " + ", ".join(f"{k}={v}" for k, v in s["config"].items()))
    return "\n".join(lines)
