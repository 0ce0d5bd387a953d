"""`kefu-pulse bench --phases soak` wiring: a 30-second soak samples and writes its section.

The real soak (30 minutes at 2,000 events/s) is run by hand and recorded in docs/benchmarks.md;
this only checks that the phase runs, samples RSS and /metrics, and writes a well-formed section
without touching the rest of the report.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from streams.tooling.bench.report.soak import BEGIN, END
from tests.integration.harness import ROOT

pytestmark = pytest.mark.integration


def test_quick_soak_samples_and_writes_its_section(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\nthe rest of the report\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "streams.cli", "bench", "--quick", "--phases", "soak",
         "--soak-minutes", "0.4", "--soak-sample-seconds", "8", "--soak-out", str(out),
         "--workdir", str(tmp_path / "work")],
        capture_output=True, timeout=300, cwd=ROOT, check=False,
    )
    stderr = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, stderr[-4000:]
    text = out.read_text(encoding="utf-8")
    assert text.startswith("# Benchmarks\n\nthe rest of the report\n")
    section = text[text.index(BEGIN):text.index(END)]
    rows = [ln for ln in section.splitlines() if ln.startswith("| ") and ln[2].isdigit()]
    assert len(rows) >= 3, section
    assert "flat" in section and "RSS" in section
    assert "soak: minute" in stderr
