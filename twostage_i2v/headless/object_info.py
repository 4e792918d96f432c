"""A ComfyUI's node definitions (what ``GET /object_info`` answers), in-process or from a server.

The workflow validator takes them as plain data; this is where they come from.
"""

from __future__ import annotations

import json


def object_info_in_process(nodes_module) -> dict:
    """What ``GET /object_info`` would answer, from ComfyUI's imported ``nodes`` module."""
    import folder_paths
    from comfy_api.internal import _ComfyNodeInternal

    out = {}
    with folder_paths.cache_helper:
        for name, cls in nodes_module.NODE_CLASS_MAPPINGS.items():
            try:
                if issubclass(cls, _ComfyNodeInternal):
                    out[name] = cls.GET_NODE_INFO_V1()
                    continue
                inputs = cls.INPUT_TYPES()
                returns = cls.RETURN_TYPES
                out[name] = {
                    "input": inputs,
                    "input_order": {k: list(v.keys()) for k, v in inputs.items()},
                    "output": list(returns),
                    "output_name": list(getattr(cls, "RETURN_NAMES", returns)),
                    "name": name,
                    "display_name": nodes_module.NODE_DISPLAY_NAME_MAPPINGS.get(name, name),
                    "category": getattr(cls, "CATEGORY", "sd"),
                    "output_node": bool(getattr(cls, "OUTPUT_NODE", False)),
                }
            except Exception:  # the server skips a node whose definition fails, and so do we
                continue
    # JSON round trip: tuples become lists, as over HTTP.
    return json.loads(json.dumps(out, default=str))


def object_info_from_server(url: str) -> dict:
    from .client import ComfyClient

    return ComfyClient(url, timeout=120).object_info()
