"""The soak section of docs/benchmarks.md is kept, replaced or added, never lost."""

from __future__ import annotations

from streams.tooling.bench.report.soak import BEGIN, END, keep_section


def test_the_soak_section_survives_a_rewrite_of_the_report() -> None:
    section = f"{BEGIN}\n## Soak\nfigures\n{END}\n"
    with_soak = keep_section("# Report\n", section)
    assert with_soak == "# Report\n\n" + section
    assert keep_section("# New report\n", with_soak[with_soak.index(BEGIN):]) == (
        "# New report\n\n" + section)
    newer = f"{BEGIN}\n## Soak\nnew figures\n{END}\n"
    assert keep_section(with_soak, newer) == "# Report\n\n" + newer
    assert keep_section("# Report\n", None) == "# Report\n"
