# Two commands set everything up on a fresh machine:
#   make run   - create .venv if missing, install, run the pipeline on a generated SYNTHETIC demo set
#   make test  - the same install, then the whole test suite
# Containers (README "Containers"): make images (CPU pipeline, MLflow server, app), make images-gpu.
# Tools kept apart from the project's dependencies: make tools (checkov and bandit into .venv-tools).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test lint compile ui clean tools images images-gpu base-image docker-engine

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "installing the project and its dependencies into $(VENV) (a few minutes the first time)"
	$(BIN)/python -m pip install --progress-bar on -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/melanoma-mlops run

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

compile: $(STAMP)
	$(BIN)/melanoma-mlops compile --output pipeline.yaml

# The MLflow UI on the embedded store that `make run` writes.
ui: $(STAMP)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlruns/mlflow.db --port 5000

clean:
	rm -rf local_outputs demo_data pipeline.yaml

# ---- tools that must not share .venv with the project (their pins conflict with its dependencies)
# `make tools` installs checkov (Dockerfile and Kubernetes manifest scanner) and bandit (Python
# security linter, tests/test_static_scan.py) into .venv-tools.
TOOLS_VENV ?= .venv-tools
CHECKOV_VERSION ?= 3.3.30
BANDIT_VERSION ?= 1.9.4
TOOLS_STAMP := $(TOOLS_VENV)/.checkov-$(CHECKOV_VERSION)-bandit-$(BANDIT_VERSION)

$(TOOLS_STAMP):
	test -x $(TOOLS_VENV)/bin/python || $(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TOOLS_VENV)/bin/python -m pip install --quiet "checkov==$(CHECKOV_VERSION)" "bandit==$(BANDIT_VERSION)"
	touch $(TOOLS_STAMP)

tools: $(TOOLS_STAMP)

# ---- container images (README "Containers", docs/cluster.md "Build and push the images")
# `make images` builds the CPU pipeline image, the MLflow server image and the app image;
# `make images-gpu` the pipeline image with tensorflow[and-cuda] for GPU nodes. Both start the
# Docker engine if none answers (docker/dockerd.sh, as root) and build on the official Python image,
# or, where no registry is reachable, on a base made from Debian packages (docker/base-image.sh).
# CA_BUNDLE: a CA bundle for pip behind a TLS-intercepting proxy (a build secret, never in an image).
export PYTHON_IMAGE ?= python:3.11.11-slim-bookworm
export CA_BUNDLE ?= $(PIP_CERT)
export BAKE_IMAGENET_WEIGHTS ?= 0

docker-engine:
	docker/dockerd.sh

base-image: docker-engine
	docker/base-image.sh

images: docker-engine
	docker/build-images.sh pipeline-cpu mlflow-server app

images-gpu: docker-engine
	docker/build-images.sh pipeline-gpu
