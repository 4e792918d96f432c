"""Core library of ComfyUI-TwoStage-I2V.

Plain Python + torch: nothing here imports ComfyUI at module level, so every
piece can be used and tested without a server. ComfyUI glue lives in
``twostage_i2v.comfy`` (imported lazily) and in the package's ``nodes/``.
"""

__version__ = "0.1.0"
