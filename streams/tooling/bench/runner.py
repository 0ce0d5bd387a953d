"""The `kefu-pulse bench` run: the broker, the phases in order, the table and the report."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from streams.tooling.bench.common import (
    log,
    machine_info,
)
from streams.tooling.bench.context import BenchContext
from streams.tooling.bench.data import throughput_simulator, write_config
from streams.tooling.bench.options import OPTIONAL_PHASES, Options, add_arguments
from streams.tooling.bench.phases import (
    baselines,
    broker,
    data,
    day,
    domain,
    latency,
    profile,
    scale,
    soak,
    worker,
)
from streams.tooling.bench.report.markdown import render_markdown
from streams.tooling.bench.report.soak import keep_section, render_soak, write_section
from streams.tooling.bench.report.table import render_table
from streams.tooling.broker import EmbeddedBroker


class Bench(BenchContext):
    """A whole `kefu-pulse bench` run: the embedded broker, then each chosen phase in order."""

    def run(self) -> dict[str, Any]:
        o = self.o
        t_all = time.monotonic()
        self.r["machine"] = machine_info()
        self.r["load_start"] = os.getloadavg()
        log(f"work directory {self.workdir}")
        self.broker = EmbeddedBroker(log_path=self.workdir / "tansu.log").start()
        log(f"embedded broker at {self.broker.bootstrap}")
        sim = throughput_simulator(o)
        self.config = write_config(sim, self.workdir / "kefu.toml")
        if o.quick:
            # Quick runs check the report, not the figures: start the latency and day workers
            # now, so their start-up overlaps the throughput phase.
            self.prestarted["latency"] = self.start_worker("lat", "wall", "worker-latency")
            self.prestarted["day"] = self.start_worker("day", "event", "worker-day")
        ph = o.phases
        if ph - set(OPTIONAL_PHASES):
            data.run(self, sim)
        if "broker" in ph:
            broker.run(self)
        if "domain" in ph:
            domain.run(self)
        if "bare" in ph:
            baselines.run_bare(self)
        if o.faust_baseline and "faust" in ph:
            baselines.run_faust(self)
        if "worker" in ph:
            worker.run(self)
        if "scale" in ph:
            scale.run(self)
        if o.profile and "profile" in ph:
            profile.run(self)
        if "latency" in ph:
            latency.run(self)
        if "day" in ph:
            day.run(self)
        if "soak" in ph:
            self.r["soak"] = soak.run(self)
        self.r["elapsed_s"] = time.monotonic() - t_all
        self.r["load_end"] = os.getloadavg()
        return self.r


def run_bench(args: argparse.Namespace) -> int:
    """`kefu-pulse bench`: measure, print the table, write the markdown report."""
    if getattr(args, "from_results", None):
        r = json.loads(Path(args.from_results).read_text(encoding="utf-8"))
        print(render_table(r), flush=True)
        out = Path(args.out) if args.out not in (None, "", "-") else None
        if args.out is None:
            out = Options().out
        if out is not None:
            out.write_text(render_markdown(r), encoding="utf-8")
            log(f"wrote {out}")
        return 0
    opts = Options.from_args(args)
    bench = Bench(opts)
    ok = False
    try:
        r = bench.run()
        r.update(repeat=opts.repeat, partitions=opts.partitions, latency_rate=opts.latency_rate,
                 latency_seconds=opts.latency_seconds, probe_hz=opts.probe_hz,
                 max_run_s=opts.max_run_s)
        # First, so that a report that cannot be drawn (a partial run) loses no figure.
        (bench.workdir / "results.json").write_text(
            json.dumps(r, indent=1, default=str), encoding="utf-8")
        try:
            print(render_table(r), flush=True)
        except (KeyError, TypeError, ValueError) as exc:  # a partial run: the log says it all
            log(f"no table for a partial run ({exc!r}); figures in results.json")
        if opts.out is not None:
            opts.out.parent.mkdir(parents=True, exist_ok=True)
            old = opts.out.read_text(encoding="utf-8") if opts.out.exists() else ""
            kept = old[old.find("<!-- soak:begin -->"):] if "<!-- soak:begin -->" in old else None
            try:
                opts.out.write_text(keep_section(render_markdown(r), kept), encoding="utf-8")
                log(f"wrote {opts.out}")
            except (KeyError, TypeError, ValueError) as exc:
                log(f"no {opts.out} for a partial run ({exc!r}); figures in "
                    f"{bench.workdir / 'results.json'}")
        if "soak" in r and opts.soak_out is not None:
            cmd = (f"kefu-pulse bench --phases soak --soak-minutes {opts.soak_minutes:g} "
                   f"--soak-rate {opts.soak_rate:g} --agents {opts.agents} --seed {opts.seed}")
            write_section(opts.soak_out, render_soak(r["soak"], cmd))
            log(f"wrote the soak section of {opts.soak_out}")
        ok = True
        return 0
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        bench.close()
        if ok and not opts.keep and opts.workdir is None:
            shutil.rmtree(bench.workdir, ignore_errors=True)
        elif not ok:
            log(f"logs kept in {bench.workdir}")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kefu-pulse bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return run_bench(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

