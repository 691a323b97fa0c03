# Every target works on a fresh machine with only Python >= 3.11 and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Parallel test workers: the suite starts real icnd processes; 2 cores suit 2 workers.
PYTEST_ARGS ?=

.PHONY: help install promtool test test-fast fuzz run demo lint format bench bench-score bench-gossip bench-sandbox bench-placement bench-blobs bench-locations bench-locality bench-rpc bench-flood bench-signatures bench-cli bench-sim bench-memory bench-drop-cost chaos clean

help:
	@echo "make demo          a local cooperative of real icnd processes placing and running tasks"
	@echo "make test          install (if needed) and run the whole test suite"
	@echo "make run           one development node in the foreground (state in ./run/dev)"
	@echo "make lint          ruff lint and format check, mypy (strict for the pure cores and the wire)"
	@echo "make fuzz          a million fuzz cases: frames, every message type, config; figures table"
	@echo "make bench         every benchmark (score, sandbox, gossip, placement, blobs, locations, locality, rpc, sim)"
	@echo "make bench-blobs   put and get of a 2 GiB file through one icnd: throughput, daemon RSS"
	@echo "make chaos         1,000 tasks on 8 icnd under SIGKILLs, a partition, kills during store writes"
	@echo "make bench-rpc     delay idle, slow-loris and not-reading RPC clients add to a new call"
	@echo "make bench-flood   a member floods 10,000 requests/s: drops, RSS, others' placements"
	@echo "make bench-cli     icnctl node status against a real icnd: median wall time (target 150 ms)"
	@echo "make bench-sim     icnd-sim: 1,000 simulated nodes, 10,000 tasks, placement variants compared"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

# promtool (Debian's prometheus package) runs the dashboard and alert checks; without it those
# tests skip. Best effort, never an error: installed only when missing, as root, with apt-get.
# Note: on a host with systemd the package also enables the prometheus service.
promtool:
	@command -v promtool >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing promtool (apt-get install prometheus) for the deploy/ checks"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && \
	      apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1; }; \
	  fi; \
	  command -v promtool >/dev/null 2>&1 || \
	    echo "promtool not found (apt-get install prometheus): its tests will skip"; }

test: $(STAMP) promtool
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP) promtool
	$(BIN)/python -m pytest -m "not integration" $(PYTEST_ARGS)

# FUZZ_ARGS="--cases 100000" for a shorter run; `make test` runs a few hundred cases per target.
FUZZ_ARGS ?=
fuzz: $(STAMP)
	$(BIN)/python -m tests.fuzz $(FUZZ_ARGS)

demo: $(STAMP)
	$(BIN)/python -m icn_dev.demo

run: $(STAMP)
	@test -f run/dev/node.key || $(BIN)/icnd init --data-dir run/dev
	@echo "In another shell: $(BIN)/icnctl --socket run/dev/icnd.sock node status"
	$(BIN)/icnd run --config config/dev.toml

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: bench-score bench-sandbox bench-gossip bench-placement bench-blobs bench-locations bench-locality bench-rpc bench-flood bench-signatures bench-cli bench-sim

bench-score: $(STAMP)
	$(BIN)/python bench/bench_score.py

bench-sandbox: $(STAMP)
	$(BIN)/python bench/bench_sandbox.py

bench-placement: $(STAMP)
	$(BIN)/python bench/bench_placement.py --nodes 16

bench-locations: $(STAMP)
	$(BIN)/python bench/bench_locations.py

bench-gossip: $(STAMP)
	$(BIN)/python bench/bench_gossip.py --nodes 16

# Needs three times the size in free disk under $TMPDIR (scales down, saying so, when short).
bench-blobs: $(STAMP)
	$(BIN)/python bench/bench_blobs.py --size-mb 2048

# About 4 minutes on 2 cores; CHAOS_ARGS="--seed 7 --tasks 200" to vary (see --help).
CHAOS_ARGS ?=
chaos: $(STAMP)
	$(BIN)/python -m icn_dev.chaos $(CHAOS_ARGS)
# Exits 1 when any call is delayed more than 100 ms over the unloaded median.
bench-rpc: $(STAMP)
	$(BIN)/python bench/bench_rpc_clients.py

bench-memory: $(STAMP)
	$(BIN)/python bench/bench_memory.py

bench-drop-cost: $(STAMP)
	$(BIN)/python bench/bench_drop_cost.py

bench-signatures: $(STAMP)
	$(BIN)/python bench/bench_signatures.py

# Exits 1 when the median of 10 calls is over 150 ms (docs/PERFORMANCE.md, "CLI start-up").
bench-cli: $(STAMP)
	$(BIN)/python bench/bench_cli.py

# Exits 1 when a node died or an honest task did not complete under the flood.
bench-flood: $(STAMP)
	$(BIN)/python bench/bench_flood.py --rate 10000 --seconds 10 --tasks 20

clean:
	rm -rf $(VENV) run .pytest_cache .hypothesis .ruff_cache *.egg-info

bench-locality: $(STAMP)
	$(BIN)/python bench/bench_locality.py

# The simulator on the production cores (docs/PERFORMANCE.md): the table and its command on
# stdout, JSON, Markdown and PNGs under results/sim/ (git-ignored). Two processes: ~1.5 min.
SIM_ARGS ?= --jobs 2
bench-sim: $(STAMP)
	@$(BIN)/python -c 'import matplotlib' 2>/dev/null || $(BIN)/python -m pip install --quiet -e '.[test,sim]'
	$(BIN)/icnd-sim scenarios/bench.toml --variants 'seed-16a k=8,seed-16c k=8,icnd k=8' --out results/sim $(SIM_ARGS)
