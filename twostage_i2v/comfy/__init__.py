"""The ComfyUI glue behind the nodes: the only package code that imports ComfyUI (folders, features, ops, layout, patcher, loaders)."""
