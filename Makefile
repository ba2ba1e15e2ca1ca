# The README's two commands: `make bench` (the smoke suite on the embedded data, then the drift
# check against reports/reference/smoke.json) and `make test`.
# Both create .venv on first use. CPU machines get torch's CPU build through constraints-cpu.txt.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
PIP     := $(BIN)/python -m pip
CONSTRAINTS ?= constraints-cpu.txt
OUT     ?= reports

.PHONY: venv bench test test-slow clean

$(BIN)/robustmri: pyproject.toml $(CONSTRAINTS)
	$(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c $(CONSTRAINTS) torch==2.13.0
	$(PIP) install -q -c $(CONSTRAINTS) -e '.[test]'
	$(PIP) install -q --no-deps "torchattacks==3.5.1"
	@touch $(BIN)/robustmri

venv: $(BIN)/robustmri

bench: venv
	$(BIN)/robustmri bench --suite smoke --out $(OUT)/smoke
	$(BIN)/robustmri check $(OUT)/smoke --reference reports/reference/smoke.json

test: venv
	$(BIN)/python -m pytest -m "not slow" -q

test-slow: venv
	$(BIN)/python -m pytest -m slow -q

clean:
	rm -rf $(VENV) $(OUT)/smoke .pytest_cache
