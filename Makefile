# fruits-pipeline: the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := $(shell sed -n 's/^uv==\([^ ;]*\).*/\1/p' requirements.txt)
SAMPLE_IMAGES ?= sample-images
N_IMAGES ?= 240

export PYTHONPATH := $(CURDIR)/spark_jobs:$(CURDIR)/plugins:$(CURDIR)
export PYSPARK_PYTHON := $(CURDIR)/$(BIN)/python
export PYSPARK_DRIVER_PYTHON := $(CURDIR)/$(BIN)/python
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: help install wheelhouse publish-wheelhouse publish-imagenet-weights browser lock lint format test test-fast package bundle sample-images demo chaos airflow bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

install: $(VENV)/.installed wheelhouse ## create .venv and the nodes' wheelhouse from the lock (quick when nothing changed)

SPARK_CONF_FILES := conf/spark/spark-env.sh conf/spark/spark-defaults.conf conf/spark/log4j2.properties

$(VENV)/.installed: requirements.txt $(SPARK_CONF_FILES) conf/spark/s3a/pom.xml conf/spark/install-s3a-jars.sh
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	@# --compile-bytecode: uv writes no .pyc by default, and where PYTHONDONTWRITEBYTECODE is set (as on
	@# the CI machine) no import ever does: every process, Spark's Python workers included, then compiled
	@# pandas, Airflow or TensorFlow from source on each import (pandas 2.6 s instead of 1.0, TensorFlow 23 s
	@# instead of 8.6, measured here).
	$(BIN)/uv pip sync --quiet --compile-bytecode --python $(BIN)/python requirements.txt
	@spark_home="$$($(BIN)/python -c 'import pyspark, pathlib; print(pathlib.Path(pyspark.__file__).parent)')" \
		&& mkdir -p "$$spark_home/conf" && cp $(SPARK_CONF_FILES) "$$spark_home/conf/" \
		&& conf/spark/install-s3a-jars.sh "$$spark_home/jars"
	@# pyspark's launcher finds SPARK_HOME with the first `python3` on PATH; make it this venv's.
	@sed -i 's|PYSPARK_PYTHON:-"python3"|PYSPARK_PYTHON:-"$(CURDIR)/$(BIN)/python"|' $(BIN)/find-spark-home
	@touch $@

# The nodes' wheelhouse (fruits_airflow.wheelhouse): the lock's wheels for EMR's nodes, downloaded from PyPI
# once per lock into the user's cache; the demo and the tests stage it in their buckets from there.
wheelhouse: $(VENV)/.installed ## download the nodes' pinned wheels once per lock (tools/wheelhouse.py)
	@$(BIN)/python -m tools.wheelhouse build >/dev/null

# ARCH=aarch64: the Graviton nodes' wheelhouse (the lean nodes' wheels; no TensorFlow, which has none).
publish-wheelhouse: $(VENV)/.installed ## upload the nodes' wheelhouse to s3://$(BUCKET)/artifacts/wheelhouse/ (AWS_PROFILE=..., ARCH=aarch64)
	@test -n "$(BUCKET)" || { echo "publish-wheelhouse: set BUCKET=<the stack's bucket>" >&2; exit 2; }
	$(BIN)/python -m tools.wheelhouse --arch "$(or $(ARCH),x86_64)" publish --bucket "$(BUCKET)"

publish-imagenet-weights: $(VENV)/.installed ## copy Keras's ImageNet MobileNetV2 file to s3://$(BUCKET)/artifacts/keras/
	@test -n "$(BUCKET)" || { echo "publish-imagenet-weights: set BUCKET=<the stack's bucket>" >&2; exit 2; }
	$(BIN)/python -m tools.imagenet_weights --bucket "$(BUCKET)"

# The UI test drives Debian's chromium through its chromedriver; nothing may download a browser.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

browser: ## install Debian's chromium and chromedriver for the UI test (once)
	@if ! test -x /usr/bin/chromium || ! test -x /usr/bin/chromedriver; then \
		echo "installing Debian's chromium and chromium-driver"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver >/dev/null; \
	fi

# pyproject.toml's dependency groups say what each place needs; uv.lock pins them together; each place's
# requirements file is exported from it (tests/test_lock.py checks that they agree), each pin with the hashes
# of its files, which every install verifies (the nodes' too, from the wheelhouse). Never edit those by hand.
LOCK_EXPORTS := dev:requirements.txt airflow:requirements-airflow.txt local-aws:requirements-local-aws.txt \
	nodes:bootstrap/requirements.txt primary:bootstrap/requirements-primary.txt \
	installer:bootstrap/requirements-installer.txt

lock: install ## resolve pyproject.toml's groups into uv.lock and export each environment's requirements file
	$(BIN)/uv lock --quiet
	@for export in $(LOCK_EXPORTS); do \
		$(BIN)/uv export --quiet --frozen --no-emit-project --only-group "$${export%%:*}" \
			--output-file "$${export#*:}" || exit 1; \
	done

lint: install ## ruff (with Airflow's AIR rules) check and format check, and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# pytest-xdist: one worker per core, each test file whole on one worker (--dist loadfile), so that its
# module fixtures are built once; the longest files first (tests/file_order.py; xdist's own reordering,
# by number of tests, is off). `make test` runs the end-to-end files in the same run: they start first,
# the demo's file on one worker while the other runs the make airflow stack's file, then the rest.
TEST_WORKERS ?= $(shell nproc)
PYTEST_PARALLEL := -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test: install lint browser ## install, lint and run the whole test suite (TEST_WORKERS=0: no workers)
	$(BIN)/pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS)

test-fast: install ## the inner loop: every test but the end-to-end ones, no lint, no apt (PYTEST_ARGS=tests/plugins)
	$(BIN)/pytest $(PYTEST_PARALLEL) -m "not e2e" $(PYTEST_ARGS)

package: install ## build dist/fruits_spark.zip, the --py-files zip of the Spark jobs
	$(BIN)/python -m fruits_airflow.artifacts --out dist

bundle: install ## write dist/airflow/ for a hosted Airflow (MWAA, Astronomer): dags/, plugins.zip, requirements.txt
	$(BIN)/python -m tools.bundle --out dist/airflow

sample-images: install ## generate $(N_IMAGES) Fruits-360-like images into $(SAMPLE_IMAGES)/
	$(BIN)/python -m tools.sample_images --out $(SAMPLE_IMAGES) --count $(N_IMAGES)

IMAGES ?= $(SAMPLE_IMAGES)
DEMO_OUT := demo-output

demo: install ## run the real DAG end to end on an embedded AWS endpoint (IMAGES=/path/to/Fruits-360/Test)
	@if [ "$(IMAGES)" = "$(SAMPLE_IMAGES)" ]; then $(MAKE) --no-print-directory sample-images; fi
	$(BIN)/python -m tools.demo --images "$(IMAGES)" --out $(DEMO_OUT)

RUNS ?= 5
SEED ?=

chaos: install ## the real DAG RUNS=N times through random faults and landing changes (SEED=S replays one)
	$(BIN)/python -m tools.chaos --runs $(RUNS) $(if $(SEED),--seed $(SEED))

PORT ?= 8080

airflow: install ## the Airflow 3 UI on 127.0.0.1:$(PORT), on the embedded AWS endpoint; Ctrl-C stops it
	@if [ "$(IMAGES)" = "$(SAMPLE_IMAGES)" ]; then $(MAKE) --no-print-directory sample-images; fi
	$(BIN)/python -m tools.airflow_stack --images "$(IMAGES)" --port $(PORT)

bench: install ## the job against the usual approach, and its parts: table + .bench/results.json (~27 minutes; BENCH_ARGS="--reduced" ~10)
	$(BIN)/python -m tools.bench $(BENCH_ARGS)

clean: ## remove generated files (keeps .venv)
	rm -rf dist demo-output sample-images .bench spark-warehouse .local-aws test-artifacts
