# CMO developer tasks. `make help` lists them.
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
RUN := $(UV) run --frozen

.PHONY: help install demo demo-agents test test-unit policy-test format lint typecheck protos check-protos image bench bench-peers ci clean

help: ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

install: ## Create .venv with both packages and the dev tools (installs uv if missing)
	@command -v uv >/dev/null 2>&1 || python3 -c "import uv" 2>/dev/null || python3 -m pip install --quiet uv
	$(UV) sync --frozen

demo: install ## Run the triage example on an embedded dev server, a worker and a client
	$(RUN) python examples/demo.py

demo-agents: install ## Run the agents example: a graph invoking a specialist over Redis, deciding, announcing
	$(RUN) python examples/agents/demo.py

test: install ## The whole suite: unit, integration (SQLite + real Postgres) and end-to-end
	$(RUN) pytest

test-unit: install ## Unit tests only (no sockets, no processes)
	$(RUN) pytest tests/unit

policy-test: install ## The golden tests of policies/ (each rule: allow and deny cases)
	$(RUN) cmoctl policy test policies

format: install ## Format the code
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

lint: install ## ruff check and format check
	$(RUN) ruff check .
	$(RUN) ruff format --check .

typecheck: install ## mypy --strict on both packages, the tests and the benchmarks
	$(RUN) mypy sdk/src server/src tests bench

protos: install ## Regenerate the checked-in protobuf/gRPC code from proto/
	$(RUN) python scripts/gen_protos.py

check-protos: install ## Fail if the checked-in generated code is stale
	$(RUN) python scripts/gen_protos.py --check

image: ## Build the server image (needs a Docker engine)
	docker build -f deploy/Dockerfile -t cmo-server:dev .

bench: install ## Run the benchmarks (JSON lines; results in bench/README.md)
	$(RUN) python bench/run.py

bench-peers: install ## CMO beside DBOS and LangGraph on W1-W3, one Postgres (installs the bench-peers group)
	$(RUN) --group bench-peers python -m bench.peers.run --repeat 3

ci: check-protos lint typecheck test ## What CI runs; also fails if tests left files in the tree
	@left=$$(git status --porcelain --untracked-files=all); \
	if [ -n "$$left" ]; then echo "tests left files in the tree:"; echo "$$left"; exit 1; fi

clean: ## Remove the environment and caches
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache .cmo examples/polyglot/node/node_modules
