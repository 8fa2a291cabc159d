# Set-up and everyday commands. Everything a test needs is installed from here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run cluster test lint format bench bench-components screenshots clean chromium nftables

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The AWS SDK for JavaScript v3 that the gateway tests ship inside a Node function.
NODE_SDK := tests/fixtures/node_sdk
$(NODE_SDK)/node_modules/.package-lock.json: $(NODE_SDK)/package-lock.json
	cd $(NODE_SDK) && npm ci --no-audit --no-fund --loglevel=error

# The web console's browser libraries (htmx, uPlot) from npm, copied where it serves them.
CONSOLE := src/lamina/console
CONSOLE_VENDOR := $(CONSOLE)/static/vendor/.built
$(CONSOLE_VENDOR): $(CONSOLE)/frontend/package-lock.json
	cd $(CONSOLE)/frontend && npm ci --no-audit --no-fund --loglevel=error
	mkdir -p $(CONSOLE)/static/vendor
	cp $(CONSOLE)/frontend/node_modules/htmx.org/dist/htmx.min.js \
	   $(CONSOLE)/frontend/node_modules/uplot/dist/uPlot.iife.min.js \
	   $(CONSOLE)/frontend/node_modules/uplot/dist/uPlot.min.css $(CONSOLE)/static/vendor/
	touch $@

# The console's browser tests (tests/e2e) drive Debian's Chromium: installed when missing.
chromium:
	@command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

# Environments' network namespaces are fenced with nftables: `nft`, installed when missing.
nftables:
	@command -v nft >/dev/null || [ -x /usr/sbin/nft ] || [ "$$(id -u)" != 0 ] || \
	  ! command -v apt-get >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables)

install: $(STAMP) $(NODE_SDK)/node_modules/.package-lock.json $(CONSOLE_VENDOR) chromium nftables

run: $(STAMP) $(CONSOLE_VENDOR)
	$(BIN)/lamina serve

# Three nodes on this machine's PostgreSQL (database `lamina`) and Redis, ports 9001-9003,
# data under .lamina-cluster/; Ctrl-C stops them all (see docs/cluster.md).
cluster: $(STAMP)
	$(BIN)/python scripts/cluster.py

# Most of the suite waits on servers, runtimes and timers, so it runs in two workers, whole
# modules at a time (a module's server starts once). The few tests that change what the whole
# host shares (`host_exclusive`) then run alone, whether or not the parallel run passed, so
# that a failing run reports every failure.
TEST_WORKERS ?= 2
test: $(STAMP) $(NODE_SDK)/node_modules/.package-lock.json nftables $(CONSOLE_VENDOR) chromium
	status=0; \
	$(BIN)/pytest --numprocesses $(TEST_WORKERS) --dist loadfile -m "not host_exclusive" || status=$$?; \
	$(BIN)/pytest -m host_exclusive || status=$$?; \
	exit $$status

# The console's pictures in the README, taken by its browser tests (`make test` keeps its own).
screenshots: $(STAMP) $(CONSOLE_VENDOR) chromium
	LAMINA_SCREENSHOTS=$(CURDIR)/docs/console $(BIN)/pytest tests/e2e

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
	$(BIN)/python -m bench.fast_path
	$(BIN)/python -m bench.front_door
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
	$(BIN)/python -m bench.network
	$(BIN)/python -m bench.netns_sysctl
	$(BIN)/python -m bench.snapstart
	$(BIN)/python -m bench.node_runtime
	$(BIN)/python -m bench.cold_path
	$(BIN)/python -m bench.python_runtime
	$(BIN)/python -m bench.loop_stall
	$(BIN)/python -m bench.spawn_rate
	$(BIN)/python -m bench.runtime_api_floor

clean:
	rm -rf $(VENV) .lamina .pytest_cache .mypy_cache .ruff_cache
