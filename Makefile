# kefu-pulse developer entry points. CI runs `make test` through .ci/run.
#
# The virtualenv is rebuilt only when pyproject.toml or the lock changes (stamp file), so
# repeated `make test` runs go straight to the checks. It installs the exact versions of
# requirements-test.lock (the runtime lock, requirements.lock, plus the test extra), hashes
# checked, then the project itself without dependencies; `make lock` regenerates both locks.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stamp
LOCK   := requirements.lock
TEST_LOCK := requirements-test.lock
# uv resolves the locks; any uv works, this one is what they were made with.
UV_VERSION ?= 0.13.9

.PHONY: venv lock demo generate test test-deps test-deps-prometheus test-deps-browser lint clean distclean

venv: $(STAMP)

$(STAMP): pyproject.toml $(LOCK) $(TEST_LOCK)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "kefu-pulse needs Python >= 3.11, found " + sys.version.split()[0])'
	@# Recreate a venv whose interpreter is missing or broken (e.g. copied from another machine).
	@$(BIN)/python -c 'import sys' 2>/dev/null || $(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes \
	  -r $(TEST_LOCK)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

# Re-resolve both locks from pyproject.toml (after changing a dependency; then `make venv` and
# commit both). Versions already locked are kept while pyproject still allows them; to move
# everything to the newest allowed, `make lock LOCK_FLAGS=--upgrade`. Universal (every
# platform's markers and wheel hashes) for Python 3.11, the oldest supported; the test lock is
# constrained by the runtime lock so the two agree. Needs only an interpreter in .venv, so it
# works while the current lock does not install.
LOCK_FLAGS ?=
lock:
	@$(BIN)/python -c 'import sys' 2>/dev/null || $(PYTHON) -m venv --clear $(VENV)
	@$(BIN)/uv --version 2>/dev/null | grep -q ' $(UV_VERSION)' || \
	  $(BIN)/python -m pip install --quiet --disable-pip-version-check 'uv==$(UV_VERSION)'
	$(BIN)/uv pip compile pyproject.toml $(LOCK_FLAGS) --universal --python-version 3.11 \
	  --generate-hashes --quiet -o $(LOCK)
	$(BIN)/uv pip compile pyproject.toml $(LOCK_FLAGS) --universal --python-version 3.11 \
	  --generate-hashes --quiet --extra test -c $(LOCK) -o $(TEST_LOCK)

demo: venv
	$(BIN)/kefu-pulse demo

# ---- test-deps: system packages the tests need beyond the virtualenv ----------------------
# Each part is guarded so an installed tool is not re-installed.
test-deps: test-deps-prometheus test-deps-browser

# prometheus + promtool, prometheus-alertmanager + amtool (deploy/ rule and routing tests).
# Debian's packages (bookworm: prometheus 2.42, alertmanager 0.25); about 30 MB to download,
# ~20 s to install. Their maintainer scripts would start both daemons (9090/9093): a temporary
# policy-rc.d (only if none exists) stops that, with or without systemd; the tests run their own.
test-deps-prometheus:
	@if command -v promtool >/dev/null && command -v prometheus >/dev/null \
	    && command -v amtool >/dev/null && command -v prometheus-alertmanager >/dev/null; then \
	  exit 0; \
	fi; \
	if ! command -v apt-get >/dev/null; then \
	  echo "test-deps-prometheus: no apt-get here; install prometheus (promtool) and" \
	       "alertmanager (amtool) yourself, or the deploy tests are skipped" >&2; \
	  exit 0; \
	fi; \
	SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	set -e; \
	policy=/usr/sbin/policy-rc.d; made_policy=; \
	if [ ! -e $$policy ]; then \
	  printf '#!/bin/sh\n# kefu-pulse make test-deps: do not start services\nexit 101\n' \
	    | $$SUDO tee $$policy >/dev/null; \
	  $$SUDO chmod 755 $$policy; made_policy=1; \
	fi; \
	trap '[ -z "$$made_policy" ] || $$SUDO rm -f '$$policy EXIT; \
	echo "test-deps-prometheus: apt-get install prometheus prometheus-alertmanager"; \
	$$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq; \
	$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install \
	  -y -qq --no-install-recommends prometheus prometheus-alertmanager >/dev/null; \
	promtool --version 2>&1 | head -1; amtool --version 2>&1 | head -1

# chromium + CJK fonts + playwright (wall-board end-to-end test). Playwright drives Debian's
# chromium (executable_path=/usr/bin/chromium): it cannot download a browser build of its own.
test-deps-browser: venv
	@missing=; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	dpkg -s fonts-noto-cjk >/dev/null 2>&1 || missing="$$missing fonts-noto-cjk"; \
	if [ -n "$$missing" ]; then \
	  set -e; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  echo "test-deps-browser: apt-get install$$missing"; \
	  $$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq; \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install \
	    -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@$(BIN)/python -c 'import playwright' 2>/dev/null || \
	  $(BIN)/pip install --quiet --disable-pip-version-check playwright

# Regenerate what is generated from sources (tests fail when these are stale).
generate: venv
	$(BIN)/python grafana/generate.py
	$(BIN)/python deploy/k8s/generate_prometheusrule.py

lint: venv
	$(BIN)/ruff check streams tests grafana deploy
	$(BIN)/mypy

# pytest runs last so its summary line is the last thing printed.
test: venv test-deps
	$(BIN)/ruff check streams tests grafana deploy
	$(BIN)/mypy
	$(BIN)/pytest -q

clean:
	rm -rf .mypy_cache .pytest_cache .ruff_cache .hypothesis .kefu-data build dist *.egg-info
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
