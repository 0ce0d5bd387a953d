"""`kefu-pulse`: demo, worker, simulate, replay, report, bench.

Business rules come from one TOML file (`--config` or KEFU_CONFIG); deployment from KEFU_*
environment variables (see the README). Errors in either stop the command with one clear line.
Tooling (`streams.tooling`: broker, simulator, bench) is imported only inside the commands that
use it, so a worker never loads it.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from streams import failpoints, gc_policy
from streams.config import ConfigError, Settings, load_config


def _settings() -> Settings:
    return Settings.from_env()


def cmd_worker(args: argparse.Namespace) -> int:
    """Run one worker until SIGINT/SIGTERM. Several workers with the same KEFU_APP_ID share load."""
    import faust

    from streams.pipeline.runtime import Names
    from streams.topics import ensure_topics
    from streams.worker import build_app

    settings = _settings()
    config = load_config(args.config)
    try:
        failpoints.configure_from_env()  # crash tests only; inert when KEFU_FAILPOINTS is unset
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    names = Names.for_settings(settings)
    inputs = {
        settings.topic_chat: settings.partitions,
        settings.topic_orders: settings.partitions,
        settings.topic_ratings: settings.partitions,
        settings.topic_agents: settings.partitions,
        settings.topic_deadletter: settings.partitions,
    }
    counts = ensure_topics(settings.bootstrap, inputs, settings=settings)
    partitions = counts[settings.topic_chat]
    # Internal topics follow the chat topic so partition p of each lives on the same worker.
    ensure_topics(
        settings.bootstrap,
        {names.rekey: partitions, names.facts: partitions, names.heartbeat: 1},
        settings=settings,
    )
    gc_policy.tune(settings.gc_threshold)
    app, _ = build_app(settings, config, partitions, counts)
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True)
    worker.execute_from_commandline()
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from streams.tooling.simulate import PROFILES, run_simulate

    settings = _settings()
    profile = PROFILES[args.profile]
    rate = args.rate
    if rate is None and profile.buyers_per_agent_minute is None:
        rate = 40.0  # the default day's load
    run_simulate(settings, rate=rate, seed=args.seed, duration=args.duration,
                 agents_per_shop=args.agents_per_shop, profile=profile)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from streams.tooling.simulate import run_replay

    settings = _settings()
    n = run_replay(settings, Path(args.file), rate=args.rate)
    print(f"replayed {n} events from {args.file}", file=sys.stderr)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """The 绩效考核表 of one period from several workers into one CSV or XLSX file."""
    from streams.report import run

    return run(args.urls, args.period, args.format, args.out, args.lang, args.token,
               args.timeout)


def _wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.25)
    return False


def say(msg: str) -> None:
    print(f"[kefu-pulse demo] {msg}", file=sys.stderr, flush=True)


def cmd_demo(args: argparse.Namespace) -> int:
    """Embedded broker + one worker + the simulator, until Ctrl-C; prints the URLs."""
    from streams.tooling.broker import EmbeddedBroker
    from streams.tooling.simulate import DEMO, Simulator, demo_config, demo_script

    if args.port is None:
        args.port = _settings().web_port
    workdir = Path(tempfile.mkdtemp(prefix="kefu-demo-"))
    sim = Simulator(seed=args.seed, agents_per_shop=args.agents_per_shop, profile=DEMO)
    config_path = Path(args.config) if args.config else workdir / "kefu.toml"
    if not args.config:
        config_path.write_text(demo_config(sim), encoding="utf-8")
    say("starting the embedded Kafka-compatible broker (Tansu) …")
    broker = EmbeddedBroker(log_path=workdir / "broker.log").start()
    say(f"broker ready at {broker.bootstrap}")
    env = {
        **os.environ,
        "KEFU_BROKER": broker.url,
        "KEFU_WEB_PORT": str(args.port),
        "KEFU_DATA_DIR": str(workdir / "data"),
        "KEFU_PARTITIONS": str(args.partitions),
        "KEFU_CONFIG": str(config_path),
    }
    # The demo's port is reachable from the network: reads and writes need tokens (made up
    # here unless set), and the URLs printed below carry them.
    for name in ("KEFU_API_TOKEN", "KEFU_READ_TOKEN"):
        env[name] = os.environ.get(name, "").strip() or secrets.token_urlsafe(16)
    read, api_token = quote(env["KEFU_READ_TOKEN"]), env["KEFU_API_TOKEN"]
    procs: list[subprocess.Popen[bytes]] = []

    def _stop(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # `kill` or a closed terminal stops everything like Ctrl-C

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stop)
    try:
        say(f"starting the worker (log: {workdir / 'worker.log'}) …")
        wlog = open(workdir / "worker.log", "wb")  # noqa: SIM115
        # Children get their own sessions so Ctrl-C reaches only us; we stop them in order.
        worker = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"], env=env, stdout=wlog, stderr=wlog,
            start_new_session=True,
        )
        procs.append(worker)
        base = f"http://127.0.0.1:{args.port}"
        if not _wait_http(f"{base}/readyz", 120, worker):
            say(f"worker did not become ready; see {workdir / 'worker.log'}")
            return 1
        say("worker ready; starting the simulator …")
        slog = open(workdir / "simulator.log", "wb")  # noqa: SIM115
        rate = [] if args.rate is None else ["--rate", str(args.rate)]
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "simulate", "--profile", "demo", *rate,
                 "--seed", str(args.seed), "--agents-per-shop", str(args.agents_per_shop)],
                env=env, stdout=slog, stderr=slog, start_new_session=True,
            )
        )
        print(
            "\n  kefu-pulse is running.\n"
            f"    wall-board {base}/wallboard?token={read}   (&lang=en, "
            "&shop=tmall-flagship&team=pre-sales)\n"
            f"    metrics    {base}/metrics\n"
            f"    agents     {base}/api/v1/agents?token={read}\n"
            f"    waiting    {base}/api/v1/waiting?token={read}   (buyer ids; or tap a tile)\n"
            f"    health     {base}/healthz   {base}/readyz\n"
            f"    write      curl -H 'Authorization: Bearer {api_token}' -H 'Content-Type: "
            f"application/json' -d '{{\"shop\":\"…\",\"agent\":\"…\",\"period\":\"today\","
            f"\"points\":5}}' {base}/api/v1/execution\n"
            f"    logs       {workdir}\n"
            + demo_script(sim, config_given=bool(args.config))
            + "  Press Ctrl-C to stop.\n",
            flush=True,
        )
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        say("a component exited; shutting down")
        return 1
    except KeyboardInterrupt:
        say("stopping …")
        return 0
    finally:
        for p in reversed(procs):  # simulator first, then the worker, then the broker
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        broker.stop()
        say("stopped")


def cmd_bench(args: argparse.Namespace) -> int:
    from streams.tooling.bench.runner import run_bench

    return run_bench(args)


def _bench_arguments(parser: argparse.ArgumentParser) -> None:
    from streams.tooling.bench.options import add_arguments

    add_arguments(parser)


class _Parser(argparse.ArgumentParser):
    """A parser whose options may be added only when its subcommand is the one being parsed.

    `bench` has two dozen options defined with the benchmark; adding them on every start would
    import tooling into each worker. argparse hands a subcommand's arguments to that
    subparser's `parse_known_args`, so that is where they are added (and `bench --help` lists
    them all).
    """

    def __init__(self, *args: Any,
                 lazy_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lazy_arguments = lazy_arguments

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self._lazy_arguments is not None:
            add, self._lazy_arguments = self._lazy_arguments, None
            add(self)
        return super().parse_known_args(args, namespace)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kefu-pulse", description=__doc__)
    p.add_argument("--config", default=None, help="business rules TOML (default: $KEFU_CONFIG)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    d = sub.add_parser("demo", help="embedded broker + worker + simulator; prints the URLs")
    # Default read in cmd_demo through Settings, so a bad KEFU_WEB_PORT is one clear line.
    d.add_argument("--port", type=int, default=None, help="worker HTTP port (KEFU_WEB_PORT)")
    d.add_argument("--rate", type=float, default=None,
                   help="simulated events per second (default: a calm room, ~0.8 new buyers "
                        "a minute per agent)")
    d.add_argument("--agents-per-shop", type=int, default=12)
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--partitions", type=int, default=4)
    d.set_defaults(func=cmd_demo)

    w = sub.add_parser("worker", help="run a worker (KEFU_BROKER, KEFU_WEB_PORT, …)")
    w.set_defaults(func=cmd_worker)

    s = sub.add_parser("simulate", help="produce a realistic live customer-service day")
    s.add_argument("--rate", type=float, default=None,
                   help="approximate events per second (default: 40, or the profile's own load)")
    s.add_argument("--profile", choices=("default", "demo"), default="default",
                   help="default: the awkward day tests use; demo: a calm room with status "
                        "events and a scripted incident")
    s.add_argument("--seed", type=int, default=7)
    s.add_argument("--duration", type=float, default=None, help="seconds (default: forever)")
    s.add_argument("--agents-per-shop", type=int, default=6,
                   help="agents per shop (keep ~2–3 new buyers a minute per agent)")
    s.set_defaults(func=cmd_simulate)

    r = sub.add_parser("replay", help="produce JSONL events into the topics (backfill)")
    r.add_argument("file")
    r.add_argument("--rate", type=float, default=None, help="events per second (default: max)")
    r.set_defaults(func=cmd_replay)

    rp = sub.add_parser("report", help="the scorecard (绩效考核表) of workers into CSV/XLSX")
    rp.add_argument("urls", nargs="+", metavar="URL", help="worker base URLs, http://host:6066")
    rp.add_argument("--period", default="month",
                    help="today, month, or the current YYYY-MM / YYYY-MM-DD (default: month)")
    rp.add_argument("--format", choices=("csv", "xlsx"), default=None,
                    help="default: from the --out suffix")
    rp.add_argument("--out", required=True, help="file to write")
    rp.add_argument("--lang", choices=("zh", "en"), default="zh", help="column headers")
    rp.add_argument("--token", default=None, help="read token (default: $KEFU_READ_TOKEN)")
    rp.add_argument("--timeout", type=float, default=30.0, help="seconds per worker")
    rp.set_defaults(func=cmd_report)

    b = sub.add_parser("bench", help="measure the worker against a bare consumer",
                       lazy_arguments=_bench_arguments)
    b.set_defaults(func=cmd_bench)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.config is None:
        args.config = os.environ.get("KEFU_CONFIG") or None
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"kefu-pulse: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
