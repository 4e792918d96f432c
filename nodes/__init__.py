"""The package's ComfyUI nodes (V3 schema), collected into one extension.

Each module in ``NODE_MODULES`` defines ``NODES``: a list of ``io.ComfyNode``
classes. Node modules are thin: they translate widgets into calls of the core
library ``twostage_i2v`` and its ComfyUI glue (``twostage_i2v.comfy``).
"""

from __future__ import annotations

import importlib
import logging

from comfy_api.latest import ComfyExtension, io

NODE_MODULES = (
    "stage_bridge",
    "motion_prompt",
    "wan_gguf_loader",
    "text_encoder_gguf",
    "expert_split",
)


def all_nodes() -> list[type[io.ComfyNode]]:
    nodes: list[type[io.ComfyNode]] = []
    for name in NODE_MODULES:
        # One broken module (say, an API a ComfyUI version lacks) must not take the
        # other nodes down with it: ComfyUI would drop the whole package.
        try:
            nodes.extend(importlib.import_module(f".{name}", __name__).NODES)
        except Exception:
            logging.exception("TwoStage I2V: the nodes of %s could not be loaded; the others still are", name)
    return nodes


importlib.import_module(".routes", __name__).register()  # HTTP routes for web/; a no-op without a running server


class TwoStageI2VExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return all_nodes()


async def comfy_entrypoint() -> TwoStageI2VExtension:
    return TwoStageI2VExtension()
