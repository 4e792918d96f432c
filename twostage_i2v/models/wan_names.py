"""Normalise Wan 2.1 diffusion-model tensor names to ComfyUI's (= the original Wan repo's).

Files come with ComfyUI's checkpoint prefix (``model.diffusion_model.``), bare,
or in diffusers' naming (``condition_embedder.*``, ``attn1.to_q`` ...).
"""

from __future__ import annotations

import re

PREFIXES = ("model.diffusion_model.", "diffusion_model.")

# diffusers name fragment -> ComfyUI name fragment, applied to whole dotted
# segments. Diffusers swaps the block norms: its norm2 is Wan's norm3 (the
# affine cross-attention norm); Wan's norm2 has no parameters.
_DIFFUSERS_BLOCK = (
    ("attn1.to_q.", "self_attn.q."),
    ("attn1.to_k.", "self_attn.k."),
    ("attn1.to_v.", "self_attn.v."),
    ("attn1.to_out.0.", "self_attn.o."),
    ("attn1.norm_q.", "self_attn.norm_q."),
    ("attn1.norm_k.", "self_attn.norm_k."),
    ("attn2.to_q.", "cross_attn.q."),
    ("attn2.to_k.", "cross_attn.k."),
    ("attn2.to_v.", "cross_attn.v."),
    ("attn2.to_out.0.", "cross_attn.o."),
    ("attn2.norm_q.", "cross_attn.norm_q."),
    ("attn2.norm_k.", "cross_attn.norm_k."),
    ("attn2.add_k_proj.", "cross_attn.k_img."),
    ("attn2.add_v_proj.", "cross_attn.v_img."),
    ("attn2.norm_added_k.", "cross_attn.norm_k_img."),
    ("ffn.net.0.proj.", "ffn.0."),
    ("ffn.net.2.", "ffn.2."),
    ("norm2.", "norm3."),
)
_DIFFUSERS_TOP = {
    "condition_embedder.time_embedder.linear_1.": "time_embedding.0.",
    "condition_embedder.time_embedder.linear_2.": "time_embedding.2.",
    "condition_embedder.text_embedder.linear_1.": "text_embedding.0.",
    "condition_embedder.text_embedder.linear_2.": "text_embedding.2.",
    "condition_embedder.time_proj.": "time_projection.1.",
    "condition_embedder.image_embedder.norm1.": "img_emb.proj.0.",
    "condition_embedder.image_embedder.ff.net.0.proj.": "img_emb.proj.1.",
    "condition_embedder.image_embedder.ff.net.2.": "img_emb.proj.3.",
    "condition_embedder.image_embedder.norm2.": "img_emb.proj.4.",
    "condition_embedder.image_embedder.pos_embed": "img_emb.emb_pos",
    "proj_out.": "head.head.",
    "scale_shift_table": "head.modulation",
}
_BLOCK = re.compile(r"^(blocks\.\d+\.)(.*)$")


def strip_prefix(name: str) -> str:
    for p in PREFIXES:
        if name.startswith(p):
            return name[len(p):]
    return name


def is_diffusers_naming(names) -> bool:
    return any(n.startswith("condition_embedder.") or ".attn1.to_q." in n for n in names)


def _from_diffusers(name: str) -> str:
    m = _BLOCK.match(name)
    if m:
        head, rest = m.groups()
        if rest == "scale_shift_table":
            return head + "modulation"
        for old, new in _DIFFUSERS_BLOCK:
            if rest.startswith(old):
                return head + new + rest[len(old):]
        return name
    for old, new in _DIFFUSERS_TOP.items():
        if name.startswith(old):
            return new + name[len(old):]
    return name


def normalise_names(names) -> dict[str, str]:
    """Map each file name to its ComfyUI name (prefix stripped, diffusers renamed)."""
    stripped = {n: strip_prefix(n) for n in names}
    if is_diffusers_naming(stripped.values()):
        return {n: _from_diffusers(s) for n, s in stripped.items()}
    return stripped
