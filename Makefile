# The front door. `make serve` and `make test` work on a fresh clone with only Python 3.11 installed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PORT ?= 3000
MODEL_TAG ?= penguins:latest
export MODEL_TAG

.PHONY: help install browser engines train serve test test-fast docs lint build clean

help:  ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(INSTALLED): pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev,scoring,models]"
	touch $@

install: $(INSTALLED)  ## create .venv with the pinned dependencies

browser:  ## Debian's chromium + chromedriver, for the form page's browser test
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "error: the browser test needs chromium and chromium-driver: sudo apt-get install chromium chromium-driver" >&2; exit 2; fi; }

# The real engines the tests start in temporary directories (tests/engines.py): Redis for the shared
# cache, PostgreSQL for the feature table, Prometheus for the monitoring test. Java (for Spark) is
# expected on the machine; PySpark itself comes from pip (the `scoring` extra).
engines:  ## Debian's redis-server, postgresql and prometheus, for the tests on real engines
	@command -v redis-server >/dev/null && command -v prometheus >/dev/null && [ -x /usr/lib/postgresql/15/bin/initdb ] || { \
	  if [ "$$(id -u)" = 0 ]; then DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server postgresql prometheus >/dev/null; \
	  else echo "error: the tests need redis-server, postgresql and prometheus: sudo apt-get install redis-server postgresql prometheus" >&2; exit 2; fi; }
	@command -v java >/dev/null || { echo "error: the Spark tests need Java 17: sudo apt-get install openjdk-17-jre-headless" >&2; exit 2; }

train: $(INSTALLED)  ## train the default model (Palmer Penguins) into the BentoML model store
	$(BIN)/python train.py

# MODEL_TAG missing from the store: the default (penguins) is trained; any other tag stops with exit
# code 2 and one line naming the store's models and the train.py command (tabserve/core/model_tags.py).
serve: $(INSTALLED)  ## serve MODEL_TAG on PORT (trains the default model if missing; another missing tag stops)
	@$(BIN)/python -m tabserve.core.model_tags ensure "$(MODEL_TAG)"
	$(BIN)/bentoml serve service:PredictionService --port $(PORT)

# The suite runs on TEST_WORKERS processes (pytest-xdist): much of it waits on servers, builds and engines,
# so three share two cores well. tests/conftest.py keeps each file on one worker and starts the longest first.
TEST_WORKERS ?= 3
test: $(INSTALLED) browser engines  ## the whole test suite, every marker (real servers, a browser, a Bento build, the notebook), on TEST_WORKERS processes
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

test-fast: $(INSTALLED)  ## the tests that start no server and build nothing (not marked served or slow)
	$(BIN)/python -m pytest -m "not served and not slow"

# The documentation site (mkdocs.yml, docs/; docs/hooks.py writes the configuration page from the code).
SITE_DIR ?= site
lint: $(INSTALLED)  ## ruff: lint (pyflakes, pycodestyle, isort, bugbear, pyupgrade) and format check on the whole tree
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

docs: $(INSTALLED)  ## build the documentation site into SITE_DIR (default site/), strictly: a broken link or anchor, or a page not in the navigation, fails
	$(BIN)/mkdocs build --strict --site-dir "$(SITE_DIR)"

# The Bento installs requirements.txt plus what its packed models need (an imported model's library, e.g.
# lightgbm, and Debian packages such as libgomp1, from their cards): the helper prints the build file,
# bentofile.yaml itself when they need nothing more, else a generated copy in a temporary directory.
build: $(INSTALLED)  ## `bentoml build` a Bento packing MODEL_TAG and the libraries its models need (trains the default model if missing; another missing tag stops)
	@$(BIN)/python -m tabserve.core.model_tags ensure "$(MODEL_TAG)"
	@tmp=$$(mktemp -d "$${TMPDIR:-/tmp}/tabserve-build.XXXXXX") && trap 'rm -rf "$$tmp"' EXIT && \
	  file=$$($(BIN)/python -m tabserve.core.model_tags bentofile "$$tmp") && \
	  echo "$(BIN)/bentoml build -f $$file" && $(BIN)/bentoml build -f "$$file"

clean:  ## remove the virtualenv and caches (the BentoML store is left alone)
	rm -rf $(VENV) .pytest_cache artifacts
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

-include mk/*.mk
