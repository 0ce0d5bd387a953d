"""The soak section of docs/benchmarks.md, between its own markers.

A soak takes half an hour and is run apart from the rest (`--phases soak`), so its section is
kept when a full run rewrites the report, and replaced only by another soak.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streams.tooling.bench.common import FLAT_GROWTH

__all__ = ["BEGIN", "END", "keep_section", "render_soak", "write_section"]

BEGIN = "<!-- soak:begin -->"
END = "<!-- soak:end -->"


def render_soak(res: dict[str, Any], command: str) -> str:
    """The soak section of docs/benchmarks.md (between its markers)."""
    rows = "\n".join(
        f"| {s['minute']:.0f} | {s['rss_mib']:.0f} | {s['metrics_bytes'] / 1e6:.2f} | "
        f"{s['metrics_lines']:,.0f} | {s['scrape_s'] * 1000:.0f} | {s['agents']:.0f} | "
        f"{s['events_per_s']:,.0f} | {s['lag_s']:.1f} |"
        for s in res["samples"]
    )
    verdict = "**flat**" if res["flat"] else "**NOT flat**"
    return (
        f"{BEGIN}\n## Soak\n\n"
        f"`{command}`: one worker (wall clock) for {res['minutes']:g} min at "
        f"{res['rate']:g} events/s of simulator traffic (its awkward cases included) over "
        f"{res['agents']:,} agents; {res['sent']:,} records sent. Sampled each minute:\n\n"
        "| minute | RSS MiB | /metrics MB | samples | scrape ms | agents | events/s sent | "
        "lag s |\n|---|---|---|---|---|---|---|---|\n"
        f"{rows}\n\n"
        f"Over the last {res['window_minutes']:g} min: RSS {res['rss_growth']:+.1%}, /metrics "
        f"{res['metrics_growth']:+.1%} (flat means both under +{FLAT_GROWTH:.0%}): {verdict}.\n"
        f"{END}\n"
    )


def write_section(path: Path, section: str) -> None:
    """Put the soak section into the report, replacing an older one (or appending)."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    path.write_text(keep_section(text, section), encoding="utf-8")


def keep_section(text: str, section: str | None) -> str:
    """`text` with its soak section replaced by `section` (None: the one `text` had stays)."""
    start, stop = text.find(BEGIN), text.find(END)
    if start >= 0 and stop > start:
        old = text[start:stop + len(END)] + "\n"
        rest = (text[:start] + text[stop + len(END):].lstrip("\n")).rstrip("\n") + "\n"
        section = old if section is None else section
    else:
        rest = text
    if section is None:
        return rest
    return rest.rstrip("\n") + "\n\n" + section
