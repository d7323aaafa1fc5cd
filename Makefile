# Two entry points for a fresh machine with Python 3.11: `make start` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: start test install lint typecheck check bench record-cassettes eval-record clean

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PY) >/dev/null 2>&1 || { echo "error: $(PY) not found; install Python 3.11 or run make PY=python3"; exit 1; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[llm,knowledge,api,report,dev]'
	@touch $(STAMP)

install: $(STAMP)

## Set up, create/migrate the database, load the demo company and knowledge (first start: print an
## admin API key), then serve the web UI and the API on http://127.0.0.1:$(PORT)/ (Ctrl+C stops).
## Your own data instead: `valuechain demo remove`, then `valuechain import ...` (docs/IMPORT.md).
HOST ?= 127.0.0.1
PORT ?= 8000
start: $(STAMP)
	$(BIN)/valuechain init
	$(BIN)/valuechain serve --host $(HOST) --port $(PORT)

## Set up and run the whole test suite (PostgreSQL tests run when TEST_DATABASE_URL is set).
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -q

## Re-record the agent cassettes from the real embedded model (needs the model packages; ~5 min).
record-cassettes: $(STAMP)
	$(BIN)/pytest tests/test_agent_cassettes.py --record-mode=rewrite -q

## Re-record the eval cassettes (evals/cassettes/: selection, tasks x EVAL_TRIALS, faithfulness) from the
## embedded model; 1-2 h on 2 quiet cores. Exit 1 (a suite below its threshold) still keeps the recording.
EVAL_TRIALS ?= 4
eval-record: $(STAMP)
	$(BIN)/valuechain eval run selection tasks faithfulness injection --record --trials $(EVAL_TRIALS) || [ $$? -eq 1 ]

bench: $(STAMP)
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) build *.egg-info
