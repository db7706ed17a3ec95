PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: venv demo test lint clean wheel-test gpu-check spandrel-test iqa-test

$(BIN)/activate:
	$(PY) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/activate pyproject.toml constraints.txt
	$(PIP) install -q -c constraints.txt -e '.[test,plot,video,onnx,openvino]'
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(BIN)/sst upscale examples demo-output --overwrite
	@echo "Upscaled images are in $(CURDIR)/demo-output (inputs: examples/, model: the bundled sst-tiny x4 in sst_cli/data/weights/)."

test: venv
	$(BIN)/python -m pytest -q

# A user's install, not ours: build the wheel and sdist, install the wheel into a fresh venv outside the tree
# (its dependencies come from .venv, added as a plain path so .venv's editable sst_cli stays off), then run
# `sst --version` and upscale an example with the bundled model from another folder.
WHEEL_DIR := build/dist
WHEEL_VENV := $(or $(TMPDIR),/tmp)/sst-wheel-venv
wheel-test: venv
	rm -rf $(WHEEL_DIR) $(WHEEL_VENV)
	$(PIP) wheel -q --no-deps --no-build-isolation -w $(WHEEL_DIR) .
	$(BIN)/python -c "from setuptools import build_meta as b; b.build_sdist('$(WHEEL_DIR)')" > /dev/null
	tar tzf $(WHEEL_DIR)/sst_cli-*.tar.gz | grep -q 'sst_cli/data/weights/sst-tiny_x4.safetensors'
	tar tzf $(WHEEL_DIR)/sst_cli-*.tar.gz | grep -q 'sst_cli/data/niqe/niqe_pristine.npz'
	$(PY) -m venv $(WHEEL_VENV)
	$(BIN)/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" \
		> "$$($(WHEEL_VENV)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/sst-deps.pth"
	$(WHEEL_VENV)/bin/python -m pip install -q --no-deps $(WHEEL_DIR)/sst_cli-*.whl
	cd $(WHEEL_VENV) && bin/sst --version \
		&& bin/python -c "import sst_cli, sys; assert sst_cli.__file__.startswith(sys.prefix), sst_cli.__file__" \
		&& bin/python -c "from sst_cli.evaluation.niqe import pristine_model; assert pristine_model()[1].shape == (36, 36)" \
		&& bin/sst upscale $(CURDIR)/examples/butterfly.png out/ \
		&& bin/python -c "from PIL import Image; s = Image.open('out/butterfly.png').size; assert s == (256, 256), s; print('wheel install OK: x4 output', s)"

lint: venv
	$(BIN)/ruff check sst_cli tests benchmarks

clean:
	rm -rf $(VENV) $(EXTRAS_VENV) .venv-spandrel .venv-iqa demo-output .pytest_cache build

# The GPU paths on the real kernels (benchmarks/gpu_check.py): at most 10 minutes on one H100-class GPU,
# 3 with ARGS=--quick; ARGS=--list prints the plan. Exits 2 without CUDA.
gpu-check: venv
	$(BIN)/python -m benchmarks.gpu_check $(ARGS)

# The extras that need another torch than .venv's, in one venv of their own (.venv-extras): sst in spandrel
# (tests/test_spandrel.py) and the [iqa] extra (pyiqa: LPIPS, DISTS, MUSIQ, MANIQA, CLIPIQA; tests/test_iqa.py).
# spandrel and pyiqa import torchvision, whose registry build needs its own torch (torchvision 0.29: torch 2.14, a
# CUDA build that runs on the CPU), which .venv's pinned CPU torch 2.13 cannot load ("operator torchvision::nms does
# not exist"). So no constraints.txt here, and .venv is never touched. pyiqa also pulls timm and transformers, and
# through facexlib opencv-python, the GUI build: it and sst's opencv-python-headless write the same cv2/ folder, and
# the GUI files win, which need Qt and the system's libGL.so.1 (absent in slim containers, where `import cv2`, so
# every sst command, then fails). So the GUI build is uninstalled and the headless one reinstalled over it (same
# version, no dependencies); `pip check` then says facexlib wants opencv-python, which is harmless: the module it
# imports is the same cv2, and no sst metric uses it. No weights are downloaded (tests/test_iqa.py makes random
# ones). From a fresh clone on the 2-core machine, `make spandrel-test iqa-test` took 3 min 33 s (the 41 tests: about
# 1 min) and the venv 6.9 GB; separate venvs took 2 min 14 s + 4 min 45 s and 5.7 + 6.9 GB.
EXTRAS_VENV := .venv-extras
$(EXTRAS_VENV)/.installed: pyproject.toml
	$(PY) -m venv $(EXTRAS_VENV)
	$(EXTRAS_VENV)/bin/python -m pip install -q -e '.[spandrel,iqa]' 'pytest>=8'
	$(EXTRAS_VENV)/bin/python -m pip uninstall -q -y opencv-python
	$(EXTRAS_VENV)/bin/python -m pip install -q --force-reinstall --no-deps \
		"opencv-python-headless==$$($(EXTRAS_VENV)/bin/python -c "import importlib.metadata as m; print(m.version('opencv-python-headless'))")"
	touch $@

# Each fails unless every one of its tests ran: SST_REQUIRE_SPANDREL=1 / SST_REQUIRE_PYIQA=1 make a package that does
# not import an error rather than skipped tests, and tests/require_all_ran.py fails on any skip or on no test at
# all (-rs prints the reasons). CI runs both after `make test` (.ci/run).
SPANDREL_REPORT := build/spandrel-tests.xml
spandrel-test: $(EXTRAS_VENV)/.installed
	mkdir -p $(dir $(SPANDREL_REPORT))
	SST_REQUIRE_SPANDREL=1 $(EXTRAS_VENV)/bin/python -m pytest -q -rs -p no:cacheprovider --junitxml=$(SPANDREL_REPORT) tests/test_spandrel.py
	$(EXTRAS_VENV)/bin/python tests/require_all_ran.py $(SPANDREL_REPORT)

IQA_REPORT := build/iqa-tests.xml
iqa-test: $(EXTRAS_VENV)/.installed
	mkdir -p $(dir $(IQA_REPORT))
	SST_REQUIRE_PYIQA=1 $(EXTRAS_VENV)/bin/python -m pytest -q -rs -p no:cacheprovider --junitxml=$(IQA_REPORT) tests/test_iqa.py
	$(EXTRAS_VENV)/bin/python tests/require_all_ran.py $(IQA_REPORT)
