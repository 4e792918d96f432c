"""GGUF files themselves: read, write, the GGML block types, (de)quantize. Plain torch/numpy; knows no model and no ComfyUI."""
