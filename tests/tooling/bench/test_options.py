"""`kefu-pulse bench` options: the command a report prints reproduces the run."""

from __future__ import annotations

import argparse

from streams.tooling.bench import options


def test_the_reported_command_reproduces_the_options() -> None:
    parser = argparse.ArgumentParser()
    options.add_arguments(parser)
    for argv in (["--quick"], [], ["--events", "5000", "--agents", "30", "--no-profile",
                                   "--no-with-orders", "--max-run-seconds", "42"]):
        opts = options.Options.from_args(parser.parse_args(argv))
        again = options.Options.from_args(parser.parse_args(opts.command().split()[2:]))
        assert again.command() == opts.command()
        assert (again.events, again.agents, again.profile, again.with_orders) == (
            opts.events, opts.agents, opts.profile, opts.with_orders)
