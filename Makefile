# Two commands do everything: `make demo` and `make test`. Both create .venv themselves.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: build demo test lint bench soak clean

# The request path (the packages in compiled.txt: guard/core, guard/proxy) is compiled with
# mypyc in place (setup.py); `make build` recompiles whatever changed, and the tests run the
# compiled modules. The editable install itself is left uncompiled so it does not build twice.
COMPILED_DIRS := $(shell sed -e 's/\#.*//' compiled.txt)
COMPILED_SRC := $(foreach d,$(COMPILED_DIRS),$(wildcard $(d)/*.py))
BUILT := $(VENV)/.built

$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip 'setuptools>=68'  # venvs of 3.12+ have none
	GUARD_PURE_PYTHON=1 $(BIN)/python -m pip install -q -e '.[dev]' \
		--config-settings editable_mode=compat
	touch $(STAMP)

# A module compiled once but no longer (moved, or its package left compiled.txt) would
# shadow its .py: every .so outside the compiled packages is removed first.
$(BUILT): $(STAMP) setup.py compiled.txt $(COMPILED_SRC)
	find guard -name '*.so' $(foreach d,$(COMPILED_DIRS),-not -path '$(d)/*') -delete
	@echo "Compiling the request path ($(COMPILED_DIRS)) to C with mypyc: about 2 minutes the first time, seconds after that..."
	$(BIN)/python setup.py -q build_ext --inplace
	touch guard__mypyc.*.so $(BUILT)  # mypyc relinks only what changed; mark this build current

build: $(BUILT)

demo: $(BUILT)
	@echo "Also try: $(BIN)/guard demo --surge  (a flash-sale surge without guard, then with it, side by side)"
	$(BIN)/guard demo

test: $(BUILT)
	$(BIN)/ruff check guard tests bench setup.py
	$(BIN)/ruff format --check guard tests bench setup.py
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check guard tests bench setup.py
	$(BIN)/ruff format --check guard tests bench setup.py
	$(BIN)/mypy

bench: $(BUILT)
	$(BIN)/python bench/run.py

soak: $(BUILT)
	$(BIN)/python bench/soak.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache guard__mypyc.*.so
	find guard -name '*.so' -delete
