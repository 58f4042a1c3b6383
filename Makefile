# Two commands a newcomer needs: `make run` (train and push through the TFX pipeline) and
# `make test`. Both create .venv with Python 3.10 and install the project first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# CI and this workplace keep MovieLens under ../shared/data; elsewhere the per-user data home
# is used and ml-100k is downloaded there on first use.
ifeq ($(origin MOVIEREC_DATA_HOME), undefined)
ifneq ($(wildcard ../shared/data/ml-100k/u.data),)
export MOVIEREC_DATA_HOME := $(abspath ../shared/data)
endif
endif
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: setup run test test-fast bench lint clean browser

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/find-python.sh
	@set -e; \
	if [ ! -x $(PY) ]; then \
	  py=$$(scripts/find-python.sh); \
	  echo "creating $(VENV) with $$py"; \
	  "$$py" -m venv $(VENV); \
	fi
	$(PY) -m pip install --quiet --upgrade "pip>=24" setuptools wheel
	$(PY) -m pip install --quiet -e '.[dev,kubeflow]'
	@touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/movierec run $(ARGS)

test: $(STAMP) browser
	$(PY) -m pytest tests $(PYTEST_ARGS)

# The report test renders report.html in Debian's headless chromium.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the report test"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

test-fast: $(STAMP)
	$(PY) -m pytest tests -m "not e2e" $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m bench $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) build *.egg-info
