# The README's two commands: `make demo` and `make test`. Both build the
# environment first (scripts/setup-env.sh: idempotent, everything under .venv/).
PY := .venv/bin/python
PYTEST := $(PY) -m pytest -c tests/pytest.ini
OLD_TREE_MARKS := not core and not browser

.PHONY: env test test-new test-old demo bench

env:
	bash scripts/setup-env.sh

# The whole suite on ComfyUI 0.30.0, then everything that touches ComfyUI on 0.3.75
# (the pure-library tests do not depend on the tree and run once).
test: env
	TWOSTAGE_COMFYUI_TREE=0.30.0 $(PYTEST) tests
	TWOSTAGE_COMFYUI_TREE=0.3.75 $(PYTEST) tests -m "$(OLD_TREE_MARKS)"

test-new: env
	TWOSTAGE_COMFYUI_TREE=0.30.0 $(PYTEST) tests

test-old: env
	TWOSTAGE_COMFYUI_TREE=0.3.75 $(PYTEST) tests -m "$(OLD_TREE_MARKS)"

demo: env
	$(PY) -m twostage_i2v demo

bench: env
	$(PY) bench/dequant.py
