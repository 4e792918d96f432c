"""Quantization recipes: which GGML type each Wan 2.1 diffusion-model tensor gets.

A recipe is a ``--type`` value of ``python -m twostage_i2v convert``. Names
follow llama.cpp's (``Q4_K_M`` ...); the per-tensor choices are this package's,
made for Wan 2.1's tensors (ComfyUI naming) in the spirit of llama.cpp's
``llama_tensor_get_type``.

| `--type` | most block weights¹ | `self_attn.v`, `cross_attn.v`, `cross_attn.v_img`, `ffn.2` | `self_attn.o`, `cross_attn.o` | big embeddings² | 14B I2V file⁴ (bits/weight) |
|---|---|---|---|---|---|
| `Q3_K_S` | Q3_K | Q3_K | Q3_K | F16 | 7.45 GB (3.63) |
| `Q4_K_S` | Q4_K | Q5_K in the first n/8 layers (0–4 of 40), else Q4_K | Q4_K | F16 | 9.68 GB (4.73) |
| `Q4_K_M` | Q4_K | Q6_K in the more-bits layers³, else Q4_K | Q5_K in the more-bits layers, else Q4_K | F16 | 10.49 GB (5.12) |
| `Q5_K_S` | Q5_K | Q5_K | Q5_K | F16 | 11.61 GB (5.67) |
| `Q5_K_M` | Q5_K | Q6_K in the more-bits layers, else Q5_K | Q6_K in the more-bits layers, else Q5_K | F16 | 12.14 GB (5.93) |
| `Q6_K` | Q6_K | Q6_K | Q6_K | F16 | 13.75 GB (6.71) |
| `Q8_0` | Q8_0 | Q8_0 | Q8_0 | F16 | 17.66 GB (8.62) |
| `Q2_K` `Q3_K` `Q4_K` `Q5_K` `Q4_0` `Q4_1` `Q5_0` `Q5_1` | that type ("pure": no per-layer changes) | same | same | F16 | Q2_K 5.81 GB, Q4_0 9.59 GB, Q5_1 12.62 GB |
| `F16` | F16 | F16 | F16 | F16 | 32.80 GB (16.01) |
| `BF16` | BF16 | BF16 | BF16 | BF16 | 32.80 GB (16.01) |
| `F32` | F32 | F32 | F32 | F32 | 65.58 GB (32) |

Kept in **F32 under every recipe**: every 1-D tensor (biases; the norm weights
``norm3``, ``norm_q``, ``norm_k``, ``norm_k_img``, ``img_emb.proj.0/4``),
``blocks.N.modulation`` and ``head.modulation`` (added to activations as they
are), ``head.head.*`` (the last projection, 64 x dim), ``patch_embedding.*``
(the first layer, 5-D), and the embedding/projection matrices of footnote 2
when they hold fewer than 2**20 values.

1. The 2-D weights of ``blocks.N.*``: ``self_attn.{q,k}``, ``cross_attn.{q,k,k_img}``,
   ``ffn.0`` and any 2-D weight the table names no rule for.
2. ``text_embedding.*``, ``time_embedding.*``, ``time_projection.*``, ``img_emb.*``
   and any other non-2-D tensor with at least 2**20 (1,048,576) values. They
   stay unquantized (they condition every block), but in F16 rather than F32:
   on the 14B model that is 240 M values (0.48 GB saved), and F16 holds a bf16
   checkpoint's weights at least as precisely (10 versus 7 mantissa bits).
3. llama.cpp's ``use_more_bits(i, n)``: ``i < n/8 or i >= 7n/8 or (i - n/8) % 3 == 2``
   (integer division), the first and last eighth of the layers and every third
   layer between; for the 14B model (n = 40) layers 0–4, 7, 10, ..., 34, 35–39,
   20 of 40. The value path (v, v_img), the attention output (o) and the
   FFN down projection (ffn.2) are where llama.cpp also spends extra bits.
4. Tensor data of the Wan 2.1 I2V 14B model (16.39 G weights) under these rules,
   computed with ``plan()``, in GB of 10**9 bytes; the header adds a few kB.
   For comparison, the published wan2.1-i2v-14b Q4_K_M file is 11.3 GB: the
   llama.cpp patch of ComfyUI-GGUF that made it gives v and ffn.2 Q6_K in every
   layer, not only in the more-bits ones.

**Rows that do not fit a block.** A K-quant needs rows (the input width, the
last dim) that are a multiple of 256; a legacy type, of 32. A tensor whose
row does not fit falls back to the nearest legacy type with at least as many
bits: Q2_K and Q3_K to Q4_0, Q4_K to Q5_0, Q5_K to Q5_1, Q6_K to Q8_0 (as
llama.cpp does), and to F16 when the row is not a multiple of 32 either.
Every width of the 14B and 1.3B models (5120, 1536, 13824, 8960, 4096, 1280,
256) is a multiple of 256, so this only touches small models (dim 128, ...).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .wan_names import strip_prefix

WAN_14B_LAYERS = 40
BIG_TENSOR = 1 << 20  # values; unquantized tensors this large are stored in 16 bits

_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")
_EMBEDDINGS = ("text_embedding.", "time_embedding.", "time_projection.", "img_emb.")
_ALWAYS_F32 = ("patch_embedding.", "head.")
_V_LIKE = ("self_attn.v.weight", "cross_attn.v.weight", "cross_attn.v_img.weight", "ffn.2.weight")
_O_LIKE = ("self_attn.o.weight", "cross_attn.o.weight")
# Next type with at least as many bits whose block (32) fits more rows.
_FALLBACK = {"Q2_K": "Q4_0", "Q3_K": "Q4_0", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}
_ONE_UP = {"Q3_K": "Q4_K", "Q4_K": "Q5_K", "Q5_K": "Q6_K", "Q6_K": "Q6_K"}


@dataclass(frozen=True)
class Recipe:
    name: str
    base: str  # type of the block linear weights
    big: str  # type of large tensors kept out of quantization
    file_type: str  # gguf.LlamaFileType member recorded as general.file_type
    mode: str = "pure"  # "pure", "S" (Q4_K_S's first-layers bump) or "M" (more-bits layers)


def _r(name, base, big="F16", file_type=None, mode="pure"):
    return Recipe(name, base, big, file_type or f"MOSTLY_{name}", mode)


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        _r("Q3_K_S", "Q3_K"),
        _r("Q4_K_S", "Q4_K", mode="S"),
        _r("Q4_K_M", "Q4_K", mode="M"),
        _r("Q5_K_S", "Q5_K"),
        _r("Q5_K_M", "Q5_K", mode="M"),
        _r("Q6_K", "Q6_K"),
        _r("Q8_0", "Q8_0"),
        _r("Q2_K", "Q2_K"),
        _r("Q3_K", "Q3_K", file_type="MOSTLY_Q3_K_S"),
        _r("Q4_K", "Q4_K", file_type="MOSTLY_Q4_K_S"),
        _r("Q5_K", "Q5_K", file_type="MOSTLY_Q5_K_S"),
        _r("Q4_0", "Q4_0"),
        _r("Q4_1", "Q4_1"),
        _r("Q5_0", "Q5_0"),
        _r("Q5_1", "Q5_1"),
        _r("F16", "F16"),
        _r("BF16", "BF16", big="BF16"),
        _r("F32", "F32", big="F32", file_type="ALL_F32"),
    )
}
RECIPE_NAMES = tuple(RECIPES)


def get_recipe(recipe: str | Recipe) -> Recipe:
    if isinstance(recipe, Recipe):
        return recipe
    key = str(recipe).strip().upper()
    if key not in RECIPES:
        raise ValueError(f"unknown --type {recipe!r}; valid types: {', '.join(RECIPE_NAMES)}")
    return RECIPES[key]


def use_more_bits(i_layer: int, n_layers: int) -> bool:
    """llama.cpp's layer pick for the _M recipes (see footnote 3 of the module doc)."""
    return i_layer < n_layers // 8 or i_layer >= 7 * n_layers // 8 or (i_layer - n_layers // 8) % 3 == 2


def count_layers(names) -> int:
    """Number of ``blocks.N.`` layers among tensor names (prefixes stripped)."""
    idx = [int(m.group(1)) for n in names if (m := _BLOCK.match(strip_prefix(n)))]
    return max(idx) + 1 if idx else 0


def _qtype(name: str):
    import gguf

    return gguf.GGMLQuantizationType[name]


def _fits(type_name: str, width: int) -> bool:
    import gguf

    return width % gguf.GGML_QUANT_SIZES[_qtype(type_name)][0] == 0


def _fit(type_name: str, width: int) -> str:
    if _fits(type_name, width):
        return type_name
    alt = _FALLBACK.get(type_name)
    if alt and _fits(alt, width):
        return alt
    return "F16"


def _block_weight_type(r: Recipe, layer: int, rest: str, n_layers: int) -> str:
    if r.mode == "M" and use_more_bits(layer, n_layers):
        if rest in _V_LIKE:
            return "Q6_K"
        if rest in _O_LIKE:
            return _ONE_UP.get(r.base, r.base)
    if r.mode == "S" and layer < n_layers // 8 and rest in _V_LIKE:
        return "Q5_K"
    return r.base


def tensor_type(recipe: str | Recipe, name: str, shape, n_layers: int | None = None):
    """The ``gguf.GGMLQuantizationType`` a tensor is stored in under ``recipe``.

    ``name`` in ComfyUI naming (a ``model.diffusion_model.`` prefix is ignored);
    ``shape`` the shape it is stored with (torch order, row = last dim);
    ``n_layers`` the model's block count (default 40, Wan 2.1 14B), used by the
    per-layer rules of the _S/_M recipes.
    """
    r = get_recipe(recipe)
    if r.name == "F32":
        return _qtype("F32")
    name = strip_prefix(name)
    shape = tuple(int(s) for s in shape)
    numel = math.prod(shape)
    keep = "F32" if numel < BIG_TENSOR else r.big

    if len(shape) < 2 or "modulation" in name or name.startswith(_ALWAYS_F32) or ".norm" in name:
        return _qtype("F32")
    if name.startswith(_EMBEDDINGS) or len(shape) != 2:
        return _qtype(keep)

    m = _BLOCK.match(name)
    if m:
        chosen = _block_weight_type(r, int(m.group(1)), m.group(2), n_layers or WAN_14B_LAYERS)
    else:
        chosen = r.base
    return _qtype(_fit(chosen, shape[-1]))


def plan(recipe: str | Recipe, shapes: dict[str, tuple], n_layers: int | None = None) -> dict:
    """``{name: GGMLQuantizationType}`` for a whole model (``shapes``: name -> stored shape)."""
    n = n_layers if n_layers is not None else (count_layers(shapes) or None)
    return {k: tensor_type(recipe, k, s, n) for k, s in shapes.items()}


def file_type(recipe: str | Recipe) -> int:
    """The ``general.file_type`` value (a ``gguf.LlamaFileType``) for a recipe."""
    import gguf

    return int(gguf.LlamaFileType[get_recipe(recipe).file_type])
