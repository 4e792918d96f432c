"""Say what a model file is (a Wan 2.1 / 2.2 video model and which one, a umt5
encoder, something else) and why.

Wan files are told apart by their tensors, the way ComfyUI's own model
detection (``comfy/model_detection.py``) does: the patch embedding's input
channels (``in_dim``), the head's output channels (``out_dim``), the CLIP-vision
branch ``img_emb``, and the extra modules that mark VACE, camera, speech,
animation and other variants. The two experts of Wan 2.2 A14B have identical
tensors: only the file name or its metadata says which is which.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .wan_names import normalise_names

WAN_SIZES = {1536: "1.3B", 3072: "5B", 5120: "14B"}
# Written by this package's converter when the source file names its expert, so
# that a renamed GGUF still says which expert it is.
EXPERT_KEY = "twostage_i2v.wan.expert"
EXPERTS = ("high_noise", "low_noise")
# Metadata where other writers (llama.cpp style) keep the upstream model's name.
_NAME_KEYS = ("general.name", "general.basename", "general.finetune", "general.description",
              "general.source.url", "general.source.huggingface.repository")
_EXPERT_TEXT = {
    "high_noise": re.compile(r"high[\s_.-]*noise|(?<![a-z0-9])high(?![a-z0-9])", re.I),
    "low_noise": re.compile(r"low[\s_.-]*noise|(?<![a-z0-9])low(?![a-z0-9])", re.I),
}
_VERSION_TEXT = {"2.2": re.compile(r"wan[\s_.-]*2[._]?2(?!\d)", re.I), "2.1": re.compile(r"wan[\s_.-]*2[._]?1(?!\d)", re.I)}

_T5_ARCHES = {"t5", "t5encoder"}
# Key fragments that identify common other model families, for a helpful refusal.
_OTHER_FAMILIES = (
    ("input_blocks.", "an SDXL/SD UNet"),
    ("conditioner.embedders.", "an SDXL checkpoint"),
    ("double_blocks.", "a Flux model"),
    ("joint_blocks.", "an SD3 model"),
    ("transformer_blocks.0.attn.to_q", "a diffusers transformer (not Wan)"),
    ("blk.0.attn_q.", "a language model (LLM)"),
    ("text_model.encoder.", "a CLIP text encoder"),
    ("vision_model.encoder.", "a CLIP vision model"),
)
# The modules ComfyUI 0.30.0 checks, in its order, to pick a Wan variant's model class.
_VARIANT_KEYS = (
    ("vace_patch_embedding.weight", "vace", "Wan VACE, video editing and reference-to-video"),
    ("control_adapter.conv.weight", "camera", None),  # 2.1 or 2.2: see _camera_label
    ("casual_audio_encoder.encoder.final_linear.weight", "s2v", "Wan 2.2 S2V, speech-to-video"),
    ("audio_proj.audio_proj_glob_1.layer.bias", "humo", "HuMo, human video from text, image and audio"),
    ("face_adapter.fuser_blocks.0.k_norm.weight", "animate", "Wan 2.2 Animate, character animation and replacement"),
    ("patch_embedding_mask.weight", "scail2", "SCAIL-2, pose-driven animation"),
    ("patch_embedding_pose.weight", "scail", "SCAIL, pose-driven animation"),
    ("patch_embedding_global.weight", "wandancer", "WanDancer, music-driven dance"),
    ("ref_conv.weight", "fun-control-ref", "Wan Fun Control with a reference image, control-video-to-video"),
)

# ModelKind.kind values
WAN_I2V, WAN_T2V, WAN_VARIANT, UMT5, OTHER = "wan-i2v", "wan-t2v", "wan-variant", "umt5", "other"


@dataclass
class ModelKind:
    # "wan-i2v" (what the I2V loader takes: Wan 2.1 I2V, Wan 2.2 I2V A14B, Wan 2.2 TI2V 5B),
    # "wan-t2v", "wan-variant" (another Wan model: VACE, Fun control, camera, S2V, ...), "umt5", "other"
    kind: str
    evidence: dict = field(default_factory=dict)
    family: str | None = None  # what it is, in words
    version: str | None = None  # Wan: "2.1", "2.2" or "2.1 or 2.2"
    variant: str | None = None  # Wan: "i2v-14b", "i2v-a14b", "ti2v-5b", "t2v", "vace", "fun-control", ...
    expert: str | None = None  # A14B: "high_noise", "low_noise" or "unknown"

    def describe(self) -> str:
        if self.kind.startswith("wan-"):
            e = self.evidence
            # out_dim only where it is not Wan 2.1's 16 (the 5B family's 48)
            out = f"out_dim {e['out_dim']}, " if e.get("out_dim") not in (None, 16) else ""
            return f"{self.family} (in_dim {e.get('in_dim')}, {out}dim {e.get('dim')}, {e.get('layers')} layers)"
        if self.kind == UMT5:
            return "umt5/T5 text encoder"
        return self.family or "an unknown model"


def expert_from(file_name: str | None = None, metadata: dict | None = None) -> tuple[str, str | None]:
    """(expert, where it was read) of a Wan 2.2 A14B file: ``"high_noise"`` / ``"low_noise"``, or
    ``"unknown"`` when neither the file name nor its metadata says (or they name both)."""
    metadata = metadata or {}
    explicit = metadata.get(EXPERT_KEY)
    if explicit in EXPERTS:
        return explicit, f"metadata {EXPERT_KEY}"
    sources = [("file name", file_name)] + [(f"metadata {k}", metadata.get(k)) for k in _NAME_KEYS]
    for where, text in sources:
        if not isinstance(text, str) or not text:
            continue
        found = [e for e, pattern in _EXPERT_TEXT.items() if pattern.search(text)]
        if len(found) == 1:
            return found[0], where
    return "unknown", None


def version_from_text(*texts) -> str | None:
    """"2.2" or "2.1" when a file name (or model name) says so, else None."""
    for text in texts:
        if not isinstance(text, str):
            continue
        found = [v for v, pattern in _VERSION_TEXT.items() if pattern.search(text)]
        if len(found) == 1:
            return found[0]
    return None


def expert_metadata(source_name: str) -> dict:
    """What the converter records about a source file: its expert, when the name says one."""
    expert, _ = expert_from(source_name)
    return {EXPERT_KEY: expert} if expert in EXPERTS else {}


def _expert_words(expert: str) -> str:
    return {"high_noise": "high-noise expert", "low_noise": "low-noise expert"}.get(expert, "unknown expert")


def _camera_label(has_img: bool) -> str:
    # ComfyUI: camera (2.1, with CLIP vision) or camera_2.2 (without)
    return "Wan 2.1 Fun Camera, camera-controlled video" if has_img else "Wan 2.2 Fun Camera, camera-controlled video"


def _classify_wan(by_new: dict, architecture, file_name, metadata) -> ModelKind:
    pe = by_new["patch_embedding.weight"]
    layers = {int(m.group(1)) for k in by_new if (m := re.match(r"blocks\.(\d+)\.", k))}
    dim, in_dim = int(pe[0]), int(pe[1])
    head = by_new.get("head.head.weight")
    out_dim = int(head[0]) // 4 if head is not None else None  # patch (1, 2, 2): 4 values per channel
    has_img = any(k.startswith("img_emb.") for k in by_new)
    ev = {
        "architecture": architecture,
        "in_dim": in_dim,
        "out_dim": out_dim,
        "dim": dim,
        "layers": len(layers),
        "img_emb": has_img,
        "size": WAN_SIZES.get(dim, f"dim {dim}"),
    }
    size = ev["size"]
    named = version_from_text(file_name, *((metadata or {}).get(k) for k in _NAME_KEYS))

    def variant(label: str, name: str, version: str | None = None) -> ModelKind:
        return ModelKind(WAN_VARIANT, ev, label, version or named, name)

    for key, name, label in _VARIANT_KEYS:
        if key in by_new:
            ev["marked_by"] = key
            if name == "camera":
                return variant(_camera_label(has_img), name, "2.1" if has_img else "2.2")
            return variant(label, name)
    if has_img:
        if "img_emb.emb_pos" in by_new:
            ev["marked_by"] = "img_emb.emb_pos"
            return variant("Wan 2.1 FLF2V, first-last-frame to video", "flf2v", "2.1")
        if in_dim == 36:
            return ModelKind(WAN_I2V, ev, f"Wan 2.1 I2V {size}", "2.1", "i2v-14b" if dim == 5120 else "i2v")
        if in_dim == 48:
            return variant("Wan 2.1 Fun Control, control-video-to-video", "fun-control", "2.1")
        return variant(f"a Wan 2.1 image-conditioned variant with {in_dim} input channels", "unknown", "2.1")
    if out_dim == 48:  # the Wan 2.2 VAE's 48 latent channels: the 5B family
        if in_dim == 48:
            return ModelKind(WAN_I2V, ev, f"Wan 2.2 TI2V {size}", "2.2", "ti2v-5b")
        return variant(f"a Wan 2.2 5B variant with {in_dim} input channels, a Fun control or inpaint model",
                       "5b-variant", "2.2")
    if in_dim == 36:
        # Wan 2.2 I2V A14B: 2.1's architecture without the CLIP-vision branch, one file per expert.
        expert, where = expert_from(file_name, metadata)
        ev["expert"], ev["expert_from"] = expert, where
        return ModelKind(WAN_I2V, ev, f"Wan 2.2 I2V A14B, {_expert_words(expert)}", "2.2", "i2v-a14b", expert)
    if in_dim == 16:
        if dim == 1536 or named == "2.1":
            return ModelKind(WAN_T2V, ev, f"Wan 2.1 T2V {size}", "2.1", "t2v")
        if named == "2.2":
            expert, where = expert_from(file_name, metadata)
            ev["expert"], ev["expert_from"] = expert, where
            return ModelKind(WAN_T2V, ev, f"Wan 2.2 T2V A14B, {_expert_words(expert)}", "2.2", "t2v-a14b", expert)
        # 2.1 T2V 14B and a 2.2 T2V A14B expert have the same tensors.
        return ModelKind(WAN_T2V, ev, f"Wan 2.1 T2V {size} or a Wan 2.2 T2V A14B expert", "2.1 or 2.2", "t2v")
    if in_dim == 48:
        return variant("Wan 2.2 Fun Control, control-video-to-video", "fun-control", "2.2")
    return variant(f"a Wan variant with {in_dim} input channels, a control or inpaint model", "unknown")


def classify(shapes: dict[str, tuple], architecture: str | None = None, file_name: str | None = None,
             metadata: dict | None = None) -> ModelKind:
    """``shapes``: tensor name (as stored) -> logical shape. ``file_name`` and ``metadata``
    only tell the Wan version and the A14B expert apart; the tensors decide the rest."""
    arch = (architecture or "").lower()
    names = normalise_names(shapes)
    by_new = {new: shapes[old] for old, new in names.items()}

    if arch in _T5_ARCHES or any(k.startswith(("enc.blk.", "encoder.block.")) for k in by_new):
        return ModelKind(UMT5, {"architecture": architecture})

    if "patch_embedding.weight" in by_new and "blocks.0.self_attn.q.weight" in by_new:
        return _classify_wan(by_new, architecture, file_name, metadata)

    for fragment, family in _OTHER_FAMILIES:
        if any(fragment in k for k in by_new):
            return ModelKind(OTHER, {"architecture": architecture, "matched": fragment}, family)
    label = f"a '{architecture}' model" if architecture else None
    return ModelKind(OTHER, {"architecture": architecture}, label)
