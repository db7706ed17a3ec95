PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: venv demo test lint clean

$(BIN)/activate:
	$(PY) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/activate pyproject.toml constraints.txt
	$(PIP) install -q -c constraints.txt -e '.[test]'
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(BIN)/sst upscale examples demo-output --overwrite
	@echo "Upscaled images are in $(CURDIR)/demo-output (inputs: examples/, model: checkpoints/sst-tiny_x4)."

test: venv
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check sst_cli tests benchmarks

clean:
	rm -rf $(VENV) demo-output .pytest_cache
