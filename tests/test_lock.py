"""The lock files agree with pyproject.toml, so `make venv` installs what pyproject promises.

`make venv` installs requirements-test.lock with hashes checked and then the project without
dependencies: a dependency added to pyproject but not re-locked would silently be missing, and
a pin moved in pyproject but not in the lock would silently not move. `make lock` fixes both.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
RUNTIME = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
TEST = [Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"]["test"]]
# The batch hook relies on private members of these: they must stay pinned exactly.
EXACT = ("faust-streaming", "mode-streaming", "aiokafka")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def locked(name: str) -> dict[str, Version]:
    """{canonical name: version} of a lock file's `name==version` lines."""
    out: dict[str, Version] = {}
    for line in (ROOT / name).read_text(encoding="utf-8").splitlines():
        m = _PIN.match(line)
        if m:
            out[canonicalize_name(m.group(1))] = Version(m.group(2))
    assert out, f"{name}: no pinned requirements found"
    return out


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-test.lock"])
def test_every_runtime_dependency_is_locked_within_its_range(lock: str) -> None:
    pins = locked(lock)
    for req in RUNTIME:
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is in pyproject.toml but not in {lock}: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{lock} has {req.name}=={pins[name]}, outside pyproject's {req}: run `make lock`")


def test_every_test_dependency_is_locked_within_its_range() -> None:
    pins = locked("requirements-test.lock")
    for req in TEST:
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} (test extra) is not in requirements-test.lock"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"requirements-test.lock has {req.name}=={pins[name]}, outside pyproject's {req}")


def test_the_faust_stack_is_pinned_exactly_and_the_lock_has_those_pins() -> None:
    pins = locked("requirements.lock")
    by_name = {canonicalize_name(r.name): r for r in RUNTIME}
    for pkg in EXACT:
        req = by_name.get(canonicalize_name(pkg))
        assert req is not None, f"{pkg} must be a declared dependency"
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{pkg} must be pinned with =="
        assert pins[canonicalize_name(pkg)] == Version(specs[0].version), (
            f"{pkg}: pyproject pins {specs[0].version}, requirements.lock has "
            f"{pins[canonicalize_name(pkg)]}")


def test_the_test_lock_installs_the_runtime_lock_versions() -> None:
    runtime, test = locked("requirements.lock"), locked("requirements-test.lock")
    differ = {n: (v, test[n]) for n, v in runtime.items() if n in test and test[n] != v}
    missing = sorted(set(runtime) - set(test))
    assert not differ and not missing, (
        f"requirements-test.lock disagrees with requirements.lock: {differ}, missing {missing}")


def test_every_locked_requirement_carries_hashes() -> None:
    for name in ("requirements.lock", "requirements-test.lock"):
        text = (ROOT / name).read_text(encoding="utf-8")
        blocks = re.split(r"\n(?=[A-Za-z0-9])", text)
        unhashed = [b.split()[0] for b in blocks if _PIN.match(b) and "--hash=sha256:" not in b]
        assert not unhashed, f"{name}: no hashes for {unhashed} (pip --require-hashes fails)"
