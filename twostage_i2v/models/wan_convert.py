"""A state dict to a GGUF file under one of the package's recipes (``convert`` verb, tiny models).

The Wan side of writing: a Wan diffusion model is recognised by its tensors,
renamed to ComfyUI's names (no ``model.diffusion_model.`` prefix, as
ComfyUI-GGUF stores them), given ``general.architecture`` "wan", and each tensor
gets the type ``wan_recipes`` picks. Another model needs its ``arch`` given and
is written with the recipe's plain rules under its own (prefix-stripped) names.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping

from ..gguf.writer import WriteSummary, check_target, write_gguf
from .kind import classify
from .wan_names import normalise_names, strip_prefix
from .wan_recipes import Recipe, count_layers, file_type, get_recipe, tensor_type

RECIPE_KEY = "twostage_i2v.recipe"


def detect_arch(shapes: Mapping[str, tuple]) -> str | None:
    """"wan" when the tensors are a Wan diffusion model, else None."""
    return "wan" if classify(dict(shapes)).kind.startswith("wan-") else None


def write_model_gguf(
    path: str | os.PathLike,
    tensors: Mapping[str, Any],
    recipe: str | Recipe,
    arch: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    force: bool = False,
) -> WriteSummary:
    """Write ``tensors`` (name -> torch tensor, numpy array or ``LazyTensor``) to ``path``.

    ``recipe``: a ``--type`` value (see ``wan_recipes``). ``arch``: when None it is
    detected ("wan") from the tensors; a model that is not recognised needs it given.
    """
    r = get_recipe(recipe)
    check_target(path, force)  # before any work, as the writer would
    detected = detect_arch({name: tuple(v.shape) for name, v in tensors.items()})
    arch = arch or detected
    if not arch:
        raise ValueError(
            "cannot tell the model architecture from its tensor names (it is not a Wan diffusion model); "
            "pass arch=... (e.g. 'flux')"
        )
    names = normalise_names(list(tensors)) if detected == "wan" else {n: strip_prefix(n) for n in tensors}
    n_layers = count_layers(names.values()) or None
    return write_gguf(
        path, tensors, lambda name, stored: tensor_type(r, name, stored, n_layers), arch,
        metadata={RECIPE_KEY: r.name, **(metadata or {})}, progress=progress, force=force,
        names=names, label=r.name, file_type=file_type(r),
    )
