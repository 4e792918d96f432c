"""Say what a model file is (Wan I2V/T2V, umt5 encoder, something else) and why."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .wan_names import normalise_names

WAN_SIZES = {1536: "1.3B", 5120: "14B"}
_T5_ARCHES = {"t5", "t5encoder"}
# Key fragments that identify common other model families, for a helpful refusal.
_OTHER_FAMILIES = (
    ("input_blocks.", "an SDXL/SD UNet"),
    ("conditioner.embedders.", "an SDXL checkpoint"),
    ("double_blocks.", "a Flux model"),
    ("joint_blocks.", "an SD3 model"),
    ("transformer_blocks.0.attn.to_q", "a diffusers transformer (not Wan 2.1)"),
    ("blk.0.attn_q.", "a language model (LLM)"),
    ("text_model.encoder.", "a CLIP text encoder"),
    ("vision_model.encoder.", "a CLIP vision model"),
)


@dataclass
class ModelKind:
    kind: str  # "wan-i2v", "wan-t2v", "umt5", "other"
    evidence: dict = field(default_factory=dict)
    family: str | None = None  # for "other": what it looks like

    def describe(self) -> str:
        if self.kind.startswith("wan-"):
            e = self.evidence
            return f"Wan 2.1 {'I2V' if self.kind == 'wan-i2v' else 'T2V'} {e.get('size', '?')} (in_dim {e.get('in_dim')}, dim {e.get('dim')}, {e.get('layers')} layers)"
        if self.kind == "umt5":
            return "umt5/T5 text encoder"
        return self.family or "an unknown model"


def classify(shapes: dict[str, tuple], architecture: str | None = None) -> ModelKind:
    """``shapes``: tensor name (as stored) -> logical shape."""
    arch = (architecture or "").lower()
    names = normalise_names(shapes)
    by_new = {new: shapes[old] for old, new in names.items()}

    if arch in _T5_ARCHES or any(k.startswith(("enc.blk.", "encoder.block.")) for k in by_new):
        return ModelKind("umt5", {"architecture": architecture})

    pe = by_new.get("patch_embedding.weight")
    if pe is not None and "blocks.0.self_attn.q.weight" in by_new:
        layers = {int(m.group(1)) for k in by_new if (m := re.match(r"blocks\.(\d+)\.", k))}
        dim, in_dim = int(pe[0]), int(pe[1])
        has_img = any(k.startswith("img_emb.") for k in by_new)
        ev = {
            "architecture": architecture,
            "in_dim": in_dim,
            "dim": dim,
            "layers": len(layers),
            "img_emb": has_img,
            "size": WAN_SIZES.get(dim, f"dim {dim}"),
        }
        # I2V models take 36 input channels (noise 16 + mask 4 + image 16) and embed CLIP vision.
        return ModelKind("wan-i2v" if (in_dim == 36 or has_img) else "wan-t2v", ev)

    for fragment, family in _OTHER_FAMILIES:
        if any(fragment in k for k in by_new):
            return ModelKind("other", {"architecture": architecture, "matched": fragment}, family)
    label = f"a '{architecture}' model" if architecture else None
    return ModelKind("other", {"architecture": architecture}, label)
