# kefu-pulse developer entry points. CI runs `make test` through .ci/run.
#
# The virtualenv is rebuilt only when pyproject.toml changes (stamp file), so repeated
# `make test` runs go straight to the checks.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stamp

.PHONY: venv demo test test-deps lint clean distclean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "kefu-pulse needs Python >= 3.11, found " + sys.version.split()[0])'
	@# Recreate a venv whose interpreter is missing or broken (e.g. copied from another machine).
	@$(BIN)/python -c 'import sys' 2>/dev/null || $(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $@

demo: venv
	$(BIN)/kefu-pulse demo

# ---- test-deps: system packages the tests need beyond the virtualenv ----------------------
# Later work adds the apt installs here (prometheus/promtool, alertmanager/amtool, chromium
# for the wall-board screenshot test), each guarded so an installed tool is not re-installed.
test-deps:
	@:

lint: venv
	$(BIN)/ruff check streams tests
	$(BIN)/mypy

# pytest runs last so its summary line is the last thing printed.
test: venv test-deps
	$(BIN)/ruff check streams tests
	$(BIN)/mypy
	$(BIN)/pytest -q

clean:
	rm -rf .mypy_cache .pytest_cache .ruff_cache .hypothesis .kefu-data build dist *.egg-info
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
