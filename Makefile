# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
DEMO_LIMIT ?= 4

.PHONY: demo test install clean bench

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[local,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	rm -f out/demo.db out/demo.db-wal out/demo.db-shm
	mkdir -p out
	$(VENV)/bin/visinstruct run --headless --db out/demo.db --limit $(DEMO_LIMIT)
	$(VENV)/bin/visinstruct export --format llava --db out/demo.db --out out/llava.json
	$(VENV)/bin/visinstruct status --db out/demo.db

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/prepare.py
	$(PY) benchmarks/pipeline.py
	$(PY) benchmarks/pool.py
	$(PY) benchmarks/tui.py

clean:
	rm -rf $(VENV) out build *.egg-info
