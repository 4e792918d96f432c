#!/usr/bin/env bash
# What the browser tests (pytest -m browser) need: Debian's Chromium at
# /usr/bin/chromium and the Python playwright package in .venv that drives it.
# Safe to run again: each step checks what is already there. Never runs
# `playwright install` (a browser download, which cannot reach its host here).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$PWD/.venv
PLAYWRIGHT=playwright==1.63.0

step() { printf '[setup-browser %(%H:%M:%S)T] %s\n' -1 "$*"; }

if [ ! -x /usr/bin/chromium ]; then
  step "installing Debian's chromium"
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
/usr/bin/chromium --version 2>/dev/null | head -n1 || { echo "setup-browser: /usr/bin/chromium does not run" >&2; exit 1; }

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup-browser: $VENV is missing; run scripts/setup-env.sh first" >&2
  exit 1
fi
if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('playwright') != '${PLAYWRIGHT#*==}')" 2>/dev/null; then
  step "installing $PLAYWRIGHT into $VENV"
  "$VENV/bin/python" -m pip -q --disable-pip-version-check install "$PLAYWRIGHT" 2>&1 | grep -v ' is ignored: it is neither' || true
fi
"$VENV/bin/python" -c 'import playwright.sync_api' || { echo "setup-browser: playwright did not install" >&2; exit 1; }
step "browser ready: /usr/bin/chromium, $PLAYWRIGHT"
