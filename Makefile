# The whole set-up: `make demo` and `make test` create .venv and install
# what they need on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# TensorFlow build: the CUDA one where a GPU answers, tensorflow-cpu elsewhere.
TF_EXTRA ?= $(shell nvidia-smi >/dev/null 2>&1 && echo gpu || echo cpu)
export TF_CPP_MIN_LOG_LEVEL ?= 2
# oneDNN CPU kernels, as tfmeta sets when imported first (docs/performance.md).
export TF_ENABLE_ONEDNN_OPTS ?= 1

.PHONY: install demo test test-slow bench clean

$(STAMP): setup.cfg setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(TF_EXTRA),test,data,rl,mujoco]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) experiments/sine_demo.py

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

bench: $(STAMP)
	$(PY) -m pip install --quiet -e ".[$(TF_EXTRA),test,data,rl,mujoco,bench]"
	bash benchmarks/install_learn2learn.sh $(PY)
	$(PY) benchmarks/run.py
	$(PY) benchmarks/peers.py

clean:
	rm -rf $(VENV) build *.egg-info
