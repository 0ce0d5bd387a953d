"""`kefu-pulse bench` options: defaults, `--quick`, and the command that reproduces a run.

Imported when the CLI builds the `bench` subcommand's parser, so it needs nothing but the
standard library.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

ALL_PHASES = ("broker", "domain", "bare", "faust", "worker", "scale", "profile", "latency",
              "day")
OPTIONAL_PHASES = ("soak",)  # only when asked for: `--phases soak` (30 minutes by default)


@dataclass
class Options:
    events: int = 200_000
    repeat: int = 3
    agents: int = 1000
    partitions: int = 4
    seed: int = 7
    latency_rate: float = 2000.0
    latency_seconds: float = 30.0
    probe_hz: float = 10.0
    day_events: int = 120_000
    open_conversations: int = 100_000
    max_run_s: float = 600.0
    faust_baseline: bool = True
    profile: bool = True
    with_orders: bool = True
    quick: bool = False
    out: Path | None = Path("docs/benchmarks.md")
    workdir: Path | None = None
    keep: bool = False
    phases: frozenset[str] = frozenset(ALL_PHASES)
    soak_minutes: float = 30.0
    soak_rate: float = 2000.0
    soak_sample_s: float = 60.0
    soak_out: Path | None = Path("docs/benchmarks.md")

    @staticmethod
    def from_args(args: argparse.Namespace) -> Options:
        quick = bool(args.quick)
        o = Options(quick=quick)
        if quick:  # small counts; explicit options still win
            o.events, o.repeat, o.agents = 4_000, 1, 40
            o.latency_rate, o.latency_seconds, o.probe_hz = 300.0, 3.0, 10.0
            o.day_events, o.open_conversations = 2_000, 1_000
            o.faust_baseline, o.profile, o.max_run_s = False, False, 90.0
            o.soak_minutes, o.soak_rate, o.soak_sample_s, o.soak_out = 0.5, 200.0, 10.0, None
        for name in ("events", "repeat", "agents", "partitions", "seed", "latency_rate",
                     "latency_seconds", "probe_hz", "day_events", "open_conversations",
                     "max_run_s", "soak_minutes", "soak_rate", "soak_sample_s"):
            value = getattr(args, name, None)
            if value is not None:
                setattr(o, name, type(getattr(o, name))(value))
        if getattr(args, "faust_baseline", None) is not None:
            o.faust_baseline = bool(args.faust_baseline)
        if getattr(args, "profile", None) is not None:
            o.profile = bool(args.profile)
        if getattr(args, "with_orders", None) is not None:
            o.with_orders = bool(args.with_orders)
        out = getattr(args, "out", None)
        if out is not None:
            o.out = None if out in ("", "-") else Path(out)
        elif quick:
            o.out = None  # a quick run never overwrites the committed figures by accident
        wd = getattr(args, "workdir", None)
        o.workdir = Path(wd) if wd else None
        o.keep = bool(getattr(args, "keep", False))
        phases = getattr(args, "phases", None)
        if phases:
            chosen = frozenset(x.strip() for x in phases.split(",") if x.strip())
            unknown = chosen - set(ALL_PHASES) - set(OPTIONAL_PHASES)
            if unknown:
                raise SystemExit(f"kefu-pulse bench: unknown phases {sorted(unknown)}; "
                                 f"choose from {','.join(ALL_PHASES + OPTIONAL_PHASES)}")
            o.phases = chosen
            if out is None and chosen != set(ALL_PHASES):
                o.out = None  # a partial run never overwrites the full report by accident
        soak_out = getattr(args, "soak_out", None)
        if soak_out is not None:
            o.soak_out = None if soak_out in ("", "-") else Path(soak_out)
        if o.events < 100 or o.repeat < 1 or o.agents < 2 or o.partitions < 1:
            raise SystemExit("kefu-pulse bench: need --events >= 100, --repeat >= 1, "
                             "--agents >= 2, --partitions >= 1")
        return o

    def command(self) -> str:
        """The exact command that reproduces this run (every option spelled out)."""
        parts = ["kefu-pulse", "bench"]
        if self.quick:
            parts.append("--quick")
        parts += [
            "--events", str(self.events), "--repeat", str(self.repeat),
            "--agents", str(self.agents), "--partitions", str(self.partitions),
            "--seed", str(self.seed), "--latency-rate", f"{self.latency_rate:g}",
            "--latency-seconds", f"{self.latency_seconds:g}", "--probe-hz", f"{self.probe_hz:g}",
            "--day-events", str(self.day_events),
            "--open-conversations", str(self.open_conversations),
            "--max-run-seconds", f"{self.max_run_s:g}",
            "--faust-baseline" if self.faust_baseline else "--no-faust-baseline",
            "--profile" if self.profile else "--no-profile",
        ]
        parts.append("--with-orders" if self.with_orders else "--no-with-orders")
        return " ".join(parts)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The `bench` subcommand's options (defaults: Options; --quick shrinks them)."""
    p.add_argument("--quick", action="store_true",
                   help="small counts, under a minute (for tests); writes no doc unless --out")
    p.add_argument("--events", type=int, help="chat events to generate (default 200000)")
    p.add_argument("--repeat", type=int, help="runs per throughput figure; medians (default 3)")
    p.add_argument("--agents", type=int, help="agents across the simulated shops (default 1000)")
    p.add_argument("--partitions", type=int, help="input topic partitions (default 4)")
    p.add_argument("--seed", type=int, help="simulator seed (default 7)")
    p.add_argument("--latency-rate", type=float, help="events/s in the latency test (2000)")
    p.add_argument("--latency-seconds", type=float, help="probing time (default 30)")
    p.add_argument("--probe-hz", type=float, help="probe rounds per second (default 10)")
    p.add_argument("--day-events", type=int,
                   help="chat events per simulated 24 h in the memory/recovery day (120000)")
    p.add_argument("--open-conversations", type=int,
                   help="buyers left waiting for the per-conversation memory (100000)")
    p.add_argument("--max-run-seconds", dest="max_run_s", type=float,
                   help="give up on one worker run after this long and report a lower bound "
                        "(default 600)")
    p.add_argument("--faust-baseline", action=argparse.BooleanOptionalAction, default=None,
                   help="also time do-nothing Faust agents (default on, off with --quick)")
    p.add_argument("--profile", action=argparse.BooleanOptionalAction, default=None,
                   help="py-spy profile of a worker run (default on, off with --quick)")
    p.add_argument("--with-orders", action=argparse.BooleanOptionalAction, default=None,
                   help="also produce the simulated orders and ratings (default on; "
                        "--events still counts chat events)")
    p.add_argument("--out", default=None,
                   help="markdown report path (default docs/benchmarks.md; '-' = none)")
    p.add_argument("--workdir", default=None, help="logs and profiles (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--phases", default=None,
                   help="comma-separated subset of " + ",".join(ALL_PHASES) +
                        " (default all; a partial run writes no doc unless --out)")
    p.add_argument("--soak-minutes", type=float,
                   help="soak phase: minutes of steady traffic (default 30; --phases soak)")
    p.add_argument("--soak-rate", type=float, help="soak phase: events/s (default 2000)")
    p.add_argument("--soak-sample-seconds", dest="soak_sample_s", type=float,
                   help="soak phase: seconds between RSS and /metrics samples (default 60)")
    p.add_argument("--soak-out", default=None,
                   help="report whose soak section is replaced (default docs/benchmarks.md; "
                        "'-' for none; none with --quick)")
    p.add_argument("--from-results", default=None, metavar="RESULTS_JSON",
                   help="measure nothing: re-render the table and report from a results.json "
                        "a previous run left in its work directory")
