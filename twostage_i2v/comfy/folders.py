"""ComfyUI model folders that list .gguf files (import only inside ComfyUI)."""

from __future__ import annotations

import folder_paths

GGUF = ".gguf"


def register_gguf(*folder_names: str) -> None:
    """Make ComfyUI list .gguf files in these folders (not a default extension)."""
    changed = False
    for name in folder_names:
        if name not in folder_paths.folder_names_and_paths:
            continue
        paths, exts = folder_paths.folder_names_and_paths[name]
        if GGUF not in exts:
            exts = set(exts) | {GGUF}
            folder_paths.folder_names_and_paths[name] = (paths, exts)
            changed = True
    if changed:
        # A listing cached before the extension was added would keep hiding the files.
        for name in folder_names:
            folder_paths.filename_list_cache.pop(name, None)


def list_gguf(*folder_names: str) -> list[str]:
    register_gguf(*folder_names)
    names: set[str] = set()
    for name in folder_names:
        if name in folder_paths.folder_names_and_paths:
            names.update(n for n in folder_paths.get_filename_list(name) if n.lower().endswith(GGUF))
    return sorted(names)


def resolve(name: str, *folder_names: str) -> str:
    """Full path of ``name`` in the first folder that has it; ComfyUI refuses traversal."""
    for folder in folder_names:
        path = folder_paths.get_full_path(folder, name)
        if path:
            return path
    raise FileNotFoundError(
        f"{name} was not found in ComfyUI's {' / '.join(folder_names)} folders: "
        f"put the file in models/{folder_names[0]}/ and refresh"
    )
