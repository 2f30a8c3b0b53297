# judgeline: the two commands a new user needs are `make demo` and `make test`; both install what is missing.
# The install is idempotent: the venv is rebuilt only when pyproject.toml changes (pip's cache keeps it quick),
# and the Triton serving venv is built once per machine under ~/.cache/judgeline by `judgeline up`.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: install browser test test-unit demo up down status bench soak clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 | grep -v "^WARNING: Location" || true
	@$(BIN)/python -c "import cli.main, faust, confluent_kafka, clickhouse_connect, tritonclient.grpc, openai, torch" \
		|| (echo "install failed: see the pip output above" && exit 1)
	@rm -f $(VENV)/.installed-*
	@touch $@

# The annotation page's browser test drives Debian's headless Chromium (never a downloaded browser build); installed
# once when missing (as root, or through sudo), skipped when /usr/bin/chromium exists.
browser:
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium chromium-driver; }

test: install browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: install
	$(BIN)/python -m pytest -m "not integration" $(PYTEST_ARGS)

demo: install
	$(BIN)/judgeline demo

up: install
	$(BIN)/judgeline up

down:
	@test -x $(BIN)/judgeline && $(BIN)/judgeline down || true

status: install
	$(BIN)/judgeline status

# the benchmarks one after another (a table each on stdout, JSON under bench-results/), ending with the issue 13
# goals read off this run's files (benchmarks.goals refuses a file older than the run's start)
bench: BENCH_STARTED := $(shell date +%s)
bench: install
	$(BIN)/python -m benchmarks.judge $(if $(JUDGE_CANDIDATE),--candidate $(JUDGE_CANDIDATE))
	$(BIN)/python -m benchmarks.encoder_depth
	$(BIN)/python -m benchmarks.pipeline
	$(BIN)/python -m benchmarks.throughput
	$(BIN)/python -m benchmarks.shift
	$(BIN)/python -m benchmarks.recorders
	$(BIN)/python -m benchmarks.goals --since $(BENCH_STARTED)

# the soak: traces at a fixed rate for SOAK_MINUTES through the whole pipeline (its own stack); bench-results/soak.json
SOAK_MINUTES ?= 5
SOAK_RATE ?= 5
soak: install
	$(BIN)/python -m benchmarks.soak --minutes $(SOAK_MINUTES) --rate $(SOAK_RATE)

clean: down
	rm -rf $(VENV) .judgeline
