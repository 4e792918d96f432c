"""ComfyUI-TwoStage-I2V: SDXL still -> Wan image-to-video from GGUF.

One folder per part. The core, importable and testable without ComfyUI:
``gguf/`` (the file format), ``models/`` (what a file holds), ``bridge/``,
``prompt/``, ``workflow/``. At the edges, the only code that imports ComfyUI:
``comfy/`` (glue behind the nodes in the repository's ``nodes/``),
``headless/`` (driving a real ComfyUI without the UI) and ``tiny/`` (small
random models built with ComfyUI's classes). ``cli.py`` and ``commands/`` are
the command line on top of both.
"""

__version__ = "0.1.0"
