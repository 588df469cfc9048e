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

.PHONY: install demo test test-slow bench docs docs-serve clean

$(STAMP): setup.cfg setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(TF_EXTRA),test,data,rl,mujoco,docs]"
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

# The documentation site (mkdocs.yml): the tutorials run first (their figures
# go to build/tutorials), then a strict build into site/.
TUTORIAL_OUT := build/tutorials
docs: $(STAMP)
	for t in docs/tutorials/*.py; do TFMETA_TUTORIAL_OUT=$(TUTORIAL_OUT) $(PY) $$t || exit 1; done
	NO_MKDOCS_2_WARNING=1 TFMETA_TUTORIAL_OUT=$(TUTORIAL_OUT) $(PY) -m mkdocs build --strict

docs-serve: docs
	NO_MKDOCS_2_WARNING=1 TFMETA_TUTORIAL_OUT=$(TUTORIAL_OUT) $(PY) -m mkdocs serve

clean:
	rm -rf $(VENV) build *.egg-info site
