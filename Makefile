# RefSD: set-up, tests and demo. Every target does its own set-up on a fresh machine.
#   make demo   - run the main job (see README)
#   make test   - lint + the whole test suite against a real ComfyUI server
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CACHE ?= $(CURDIR)/.cache
# Point this at your own ComfyUI checkout to test against it instead of the cached 0.3.75 runtime.
COMFYUI_PATH ?= $(CACHE)/comfyui
export COMFYUI_PATH
export REFSD_CACHE_DIR ?= $(CACHE)
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
FRONTEND_SPEC ?= comfyui-frontend-package==1.32.9

.PHONY: setup browser photos detect-models test test-portable lint demo contact-sheet bench clean

setup: $(VENV)/.deps-stamp browser photos detect-models

# Debian's Chromium for the frontend tests (Playwright drives /usr/bin/chromium; it never
# downloads a browser). Installed when running as root; elsewhere install it yourself
# (`apt-get install chromium`) or the frontend tests are skipped with that message.
CHROMIUM ?= /usr/bin/chromium
browser:
	@if [ ! -x $(CHROMIUM) ]; then \
		if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
			|| echo "could not install chromium; the frontend tests will be skipped"; \
		else echo "chromium not found at $(CHROMIUM) (apt-get install chromium); the frontend tests will be skipped"; fi; \
	fi

# Real photos of people for the tests and the contact sheet, unpacked from pinned registry
# wheels (scikit-image's astronaut.png, ultralytics' bus.jpg; sha256-checked, never committed).
photos: | $(VENV)/.torch-stamp
	$(PY) scripts/fetch_photos.py $(CACHE)/photos

# The person detector's model files (MediaPipe BlazePose, Apache-2.0; sha256-pinned, never
# committed): from the mediapipe wheel (pip download, never installed) and, where npm is
# installed, the @mediapipe/pose npm package (lite/heavy; skipped with a message without npm).
# Files already present are not fetched again. ComfyUI: --dest <ComfyUI>/models/refsd_detect.
detect-models: | $(VENV)/.deps-stamp
	$(VENV)/bin/refsd models fetch --all --dest $(CACHE)/detect

$(VENV)/.torch-stamp:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install $(TORCH_SPEC)
	touch $@

$(COMFYUI_PATH)/main.py: | $(VENV)/.torch-stamp
	$(PY) scripts/setup_comfyui.py $(COMFYUI_PATH)

# ComfyUI's own requirements minus torch/torchvision (already installed) and torchaudio
# (PyPI's torchaudio pins an older torch; ComfyUI's audio nodes then report IMPORT FAILED,
# harmlessly). ComfyUI imports `requests` without listing it.
$(VENV)/.deps-stamp: $(VENV)/.torch-stamp $(COMFYUI_PATH)/main.py pyproject.toml requirements.txt
	mkdir -p $(CACHE)
	grep -vE '^(torch|torchvision|torchaudio)[[:space:]]*$$' $(COMFYUI_PATH)/requirements.txt > $(CACHE)/comfyui-requirements.txt
	$(PY) -m pip install -q -r $(CACHE)/comfyui-requirements.txt requests $(FRONTEND_SPEC) -e '.[test]'
	touch $@

lint: setup
	$(PY) -m ruff check .

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest

# The numeric tests under every torch CPU kernel set this CPU has (ATEN_CPU_CAPABILITY default /
# avx2 / avx512) x 1 and 2 threads: what must hold on any machine of this kind (~10 min on 2 cores).
test-portable: setup
	$(PY) scripts/test_portable.py

demo: setup
	$(PY) scripts/demo.py --output output

# Before/after of the render-only pipeline on camera.png, astronaut.png and bus.jpg: output/contact_sheet.png
contact-sheet: setup
	$(PY) scripts/contact_sheet.py --output output

bench: setup
	$(PY) bench/fit.py --quick

clean:
	rm -rf $(VENV) $(CACHE) output .pytest_cache .ruff_cache
