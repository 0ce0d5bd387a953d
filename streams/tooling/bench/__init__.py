"""`kefu-pulse bench`: the worker measured against a bare consumer, on the same data, in one run.

The benchmark reports ratios, not absolute numbers: every figure here comes from one process tree on
one machine, with the same generated events, so the ratios survive a slower or faster box.

Phases (each prints a line to stderr as it goes; the table goes to stdout and `--out`):

1. data: `--events` chat events (~200 bytes; with the simulator's orders and ratings unless
   `--no-with-orders`) for `--agents` agents at a realistic 2.5 new buyers a minute per agent,
   produced once to `--partitions`-partition topics;
2. broker: one Kafka hop's latency with Faust's fetch wait and with a short one, and whether
   ListOffsets(latest) tells the truth (Faust's changelog recovery relies on it);
3. domain: decode + the conversation and aggregate stages in-process (`Engine`), no Kafka;
4. bare: an aiokafka consumer with `orjson.loads` over the topics (median of `--repeat`);
5. faust: do-nothing Faust agents (`async for x in stream`, `stream.take(1000, within=0.1)`);
6. worker: `kefu-pulse worker` subprocesses (KEFU_CLOCK=event, a fresh app id each) on the same
   topics: start-up (spawn → first event processed) and throughput (first event → every event
   accounted in `kefu_events_total` *and* the per-agent aggregates settled);
7. scrape: `/metrics` render time and series per agent on the worker holding `--agents` agents;
8. profile: py-spy sampling a further worker run, samples grouped by layer;
9. latency: a live worker (wall clock) at `--latency-rate` events/s; probe rounds of a dedicated
   agent, produce → visible on `/metrics` (`kefu_rounds{window="1h"}`), in the snapshots
   (through filtered wall-board feeds) and on one wall-board;
10. day: a thinned day for `--agents` agents (`--day-events` per 24 h) fed in steps — RSS after
   5 min, 1 h and 24 h of traffic; SIGKILL + restart (time to /readyz and to identical
   /metrics); another half day (memory must not grow: windows expire); `--open-conversations`
   buyers left waiting (memory per 100,000 open conversations).

A worker run that does not finish within `--max-run-seconds` is reported as a lower bound.
`--quick` shrinks every count so the whole run takes well under a minute (used by the tests).

Layout: `options` (the command line), `runner` (the run), `context` (what the phases share),
`phases/` (one module per phase above, plus `soak`), `probes` (plain aiokafka clients),
`faust_noop` (the do-nothing Faust baseline, run as its own process), `metrics_text` (figures
read off `/metrics`), `drain` (waiting for a worker to finish its input), `profiling`,
`report/` (the stdout table, docs/benchmarks.md and its soak section). This package imports
nothing itself, so the CLI can load `options` alone when it builds its parser.
"""
