# Set-up and everyday commands. Everything a test needs is installed from here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run cluster test lint format bench bench-components clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/lamina serve

# Three nodes on this machine's PostgreSQL (database `lamina`) and Redis, ports 9001-9003,
# data under .lamina-cluster/; Ctrl-C stops them all (see docs/cluster.md).
cluster: $(STAMP)
	$(BIN)/python scripts/cluster.py

test: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

# Lamina side by side with serverless-offline, python-lambda-local and a physical floor,
# in rotated rounds on a fresh server (~15 min; BENCH_QUICK=1 for a ~2-minute smoke run).
# Writes bench/results/ and publishes docs/benchmarks.md: see that page.
bench: $(STAMP)
	$(BIN)/python -m bench.run

# The component benchmarks, each printing its own figures.
bench-components: $(STAMP)
	$(BIN)/python -m bench.control_plane
	$(BIN)/python -m bench.invoke
	$(BIN)/python -m bench.url
	$(BIN)/python -m bench.async
	$(BIN)/python -m bench.logs
	$(BIN)/python -m bench.sqs_mapping
	$(BIN)/python -m bench.kinesis_mapping
	$(BIN)/python -m bench.rabbitmq_mapping
	$(BIN)/python -m bench.pg_queue
	$(BIN)/python -m bench.redis_governor
	$(BIN)/python -m bench.authorization
	$(BIN)/python -m bench.cluster

clean:
	rm -rf $(VENV) .lamina .pytest_cache .mypy_cache .ruff_cache
