# sqsnn developer commands. Every target works on a fresh machine: the first one builds .venv.
#   make demo      start the embedded service, train on digits over REST, stream progress, print accuracy
#   make test      lint (ruff, ruff format --check, mypy) then the whole pytest suite
#   make lint | fmt | bench | services

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
TEST_TIMEOUT ?= 300
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install demo test lint fmt bench services

help:
	@echo "make demo      embedded service: train an SQSNN on digits over REST, stream it, print the accuracy"
	@echo "make test      lint, then run the test suite (TEST_TIMEOUT=$(TEST_TIMEOUT) s per test)"
	@echo "make lint      ruff check, ruff format --check, mypy"
	@echo "make fmt       ruff format and ruff check --fix"
	@echo "make bench     run every bench/*.py script"
	@echo "make services  start PostgreSQL and Redis if they are not answering (and install chromium once)"

# torch first, pinned, CPU build (plain PyPI on Linux serves a multi-GB CUDA one): the 2.13.0+cpu wheel from
# pip's configured sources when they hold it (a local wheel directory, a mirror), else from PyTorch's CPU index.
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install torch==2.13.0+cpu 2>/dev/null || \
		$(BIN)/python -m pip install torch==2.13.0 --extra-index-url $(TORCH_CPU_INDEX)
	$(BIN)/python -m pip install -e ".[all,dev]"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/sqsnn demo

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest tests -p no:cacheprovider --timeout=$(TEST_TIMEOUT) $(PYTEST_ARGS)

fmt: $(VENV)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(VENV)/.installed
	@set -e; for script in bench/*.py; do \
		[ -e "$$script" ] || { echo "no bench/*.py scripts"; break; }; \
		echo "== $$script"; $(BIN)/python "$$script"; \
	done

# chromium for the dashboard test: installed once (Debian, as root, as CI runs); elsewhere that test skips
services:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null && command -v docker-compose >/dev/null || \
		{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get update -qq && \
		  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver docker-compose >/dev/null; } || \
		echo "note: no chromium/chromedriver/docker-compose: the dashboard and compose tests will skip" >&2
	@pg_isready -h 127.0.0.1 -p 5432 -q || \
		pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || \
		redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
	@for i in $$(seq 50); do \
		pg_isready -h 127.0.0.1 -p 5432 -q && redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && exit 0; \
		sleep 0.2; \
	done; echo "PostgreSQL or Redis did not come up" >&2; exit 1
