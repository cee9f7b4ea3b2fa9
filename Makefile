# Two commands set everything up on a fresh machine:
#   make run   - create .venv if missing, install, run the pipeline on a generated SYNTHETIC demo set
#   make test  - the same install, then the whole test suite (ruff, then every tier)
# One tier of the tests (docs/development.md): make test-unit (the fast one), test-integration,
# test-k8s, test-containers, test-browser; PYTEST_ARGS="-k metrics" narrows any of them.
# Containers (docs/containers.md): make images (CPU pipeline, MLflow server, app), make images-gpu.
# Tools kept apart from the project's dependencies: make tools (checkov and bandit into .venv-tools).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test lint compile ui clean tools images images-gpu base-image docker-engine \
	test-unit test-integration test-k8s test-containers test-browser test-slow

# scripts/install.sh: uv from PyPI (pip where it cannot be installed), a line per phase, progress.
$(STAMP): pyproject.toml scripts/install.sh scripts/constraints.txt
	@scripts/install.sh $(PYTHON) $(VENV) dev
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/melanoma-mlops run

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest

# One tier: its folder of tests/ (docs/architecture.md "Tests"), then the tier's wall time.
define tier
	@start=$$(date +%s); status=0; $(BIN)/pytest tests/$(1) $(PYTEST_ARGS) || status=$$?; \
	secs=$$(( $$(date +%s) - start )); \
	echo "tests/$(1): $$((secs / 60)) min $$((secs % 60)) s wall time (exit $$status)"; exit $$status
endef

test-unit: $(STAMP)
	$(call tier,unit)

test-integration: $(STAMP)
	$(call tier,integration)

test-k8s: $(STAMP)
	$(call tier,k8s)

test-containers: $(STAMP)
	$(call tier,containers)

test-browser: $(STAMP)
	$(call tier,browser)

# The minutes-long fault and memory probes (marked slow) that `make test` and CI leave out.
test-slow: $(STAMP)
	$(BIN)/pytest -m slow $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

compile: $(STAMP)
	$(BIN)/melanoma-mlops compile --output pipeline.yaml

# The MLflow UI on the embedded store that `make run` writes (MLflow's server, opening in its Model
# training view: components/melanoma_mlops/tracking_server/ui_app.py).
ui: $(STAMP)
	$(BIN)/melanoma-mlops mlflow-server --backend-store-uri sqlite:///$(CURDIR)/mlruns/mlflow.db \
		--artifacts-destination $(CURDIR)/mlruns/artifacts --port 5000

clean:
	rm -rf local_outputs demo_data pipeline.yaml

# ---- tools that must not share .venv with the project (their pins conflict with its dependencies)
# `make tools` installs checkov (Dockerfile and Kubernetes manifest scanner) and bandit (Python
# security linter, tests/integration/test_static_scan.py) into .venv-tools.
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

# ---- container images (docs/containers.md, docs/cluster.md "Build and push the images")
# `make images` builds the CPU pipeline image, the MLflow server image, the app image and the
# serving image;
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
	docker/build-images.sh pipeline-cpu mlflow-server app serving

images-gpu: docker-engine
	docker/build-images.sh pipeline-gpu
