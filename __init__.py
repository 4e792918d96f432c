"""ComfyUI entry point of ComfyUI-TwoStage-I2V.

ComfyUI imports this file as a package from ``custom_nodes/``. Outside ComfyUI
(pip, linters, pytest collecting the repo) there is no ``comfy_api`` and this
module only exposes ``WEB_DIRECTORY``; inside ComfyUI a broken node module
raises so that ComfyUI's log names it.
"""

import importlib.util

WEB_DIRECTORY = "./web"

if importlib.util.find_spec("comfy_api") is not None:
    from .nodes import comfy_entrypoint  # noqa: F401

__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"] if "comfy_entrypoint" in globals() else ["WEB_DIRECTORY"]
