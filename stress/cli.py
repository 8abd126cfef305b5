"""Command line: parse, validate, dispatch; errors become one line and an exit status.

Exit status: 0 ok; 1 the run failed (a CPU died, invariants violated); 2 bad input;
128 + the signal when interrupted (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP).  A reader that
stops reading (``| head``) ends the output quietly with status 0.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import sys
import typing
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

from shared_model.build import ModelTooLarge
from shared_model.eras import ERAS

from .analysis.predict import DEFAULT_HANDOFF_NS, PredictError
from .commands.torture import add_parser as torture_parser
from .commands.torture import cmd_torture
from .engine import ui
from .engine.config import SCAN_SCENARIOS, SCENARIOS, ConfigError, Option, RunConfig
from .engine.results import (
    SCHEMA_DEMO,
    SCHEMA_ERAS,
    SCHEMA_RAMP,
    SCHEMA_RUN,
    STDOUT,
    ResultsError,
    check_outputs,
    package_version,
    report_to_stderr,
    write_json,
)
from .engine.stopping import status_of
from .engine.ui import PROG


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.config_fields: set[str] = set()  # the RunConfig fields already options here

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _shown(default: Any) -> str:
    return f"{default:g}" if isinstance(default, float) else str(default)


def config_options(p: Parser, command: str, config: type[RunConfig],
                   names: Sequence[str] | None = None) -> None:
    """The options of ``command`` that are RunConfig fields, made from each field's Option
    (flag, type, default, metavar, choices, help): ``names`` in that order, or every field
    of ``command`` not yet an option of ``p`` (a new field comes out there)."""
    fields = {f.name: f for f in dataclasses.fields(config)}
    types = typing.get_type_hints(config)
    for name in names if names is not None else list(fields):
        opt: Option | None = fields[name].metadata.get("option")
        if opt is None or command not in opt.commands or name in p.config_fields:
            continue
        p.config_fields.add(name)
        over = opt.per_command.get(command, {})
        default = over.get("default", fields[name].default)
        text = over.get("help", opt.help).format(default=_shown(default))
        flag = opt.flag or "--" + name.replace("_", "-")
        if types[name] is bool:
            p.add_argument(flag, dest=name, default=default, help=text,
                           action="store_false" if flag.startswith("--no-") else "store_true")
        else:
            p.add_argument(flag, dest=name, default=default, help=text, choices=opt.choices,
                           type=types[name] if types[name] in (int, float) else str,
                           metavar=over.get("metavar", opt.metavar))


SWAP_FIELDS = ("swap_device", "swap_latency_ms", "swap_iops", "swap_queue")


def _model_options(p: Parser, command: str, config: type[RunConfig]) -> None:
    config_options(p, command, config,
                   ("era", "users", "pages", "cow", "seed", "refault_order", "lock"))
    p.add_argument("--json", metavar="FILE", help="write the results document here (- : standard "
                                                  "output, the report then goes to stderr)")


def _run_options(p: Parser, command: str, config: type[RunConfig]) -> None:
    config_options(p, command, config, ("scenario", "cpus", "duration", "entry_cost_ns", "lockstat",
                                        "work_us", "reclaim", "ram_pages"))
    p.add_argument("--stall-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="abort with each CPU's state when no CPU makes progress this long "
                        "(a soft-lockup detector; 0 turns it off; default 10)")
    p.add_argument("--inject", action="append", default=[], metavar="FAULT",
                   help="fault injection: alloc-fail=P makes anon_vma and AVC allocations fail "
                        "with probability P (fork and faults unwind as the kernel's ENOMEM paths)")
    config_options(p, command, config, ("check_lock_order", "force") + SWAP_FIELDS)
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--live", action="store_true",
                   help="on a terminal, a live per-CPU view: what each CPU does, which lock it "
                        "waits on and who holds it, 4 times a second")
    p.add_argument("--log-level", default="WARNING",
                   choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="log level (default WARNING)")
    p.add_argument("--log-file", metavar="FILE", help="log here instead of stderr")
    # profile's own results file: written, not reported (it goes with profile's temporary folder)
    p.add_argument("--internal-json", metavar="FILE", help=argparse.SUPPRESS)
    config_options(p, command, config)


def _profile_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", dest="out", metavar="FILE",
                   help="where the profile goes (default profile-ERA.svg, .json or .txt)")
    p.add_argument("--format", dest="profile_format", default="flamegraph",
                   choices=["flamegraph", "speedscope", "raw"],
                   help="flamegraph (SVG), speedscope (JSON) or raw collapsed stacks, which are "
                        "also summed up (default flamegraph)")
    p.add_argument("--native", action="store_true",
                   help="include the compiled code's native frames (unnamed JIT frames, and "
                        "syscall for a futex wait) under the Python frames")
    p.add_argument("--rate", type=int, default=100, metavar="HZ",
                   help="samples per second per process (default 100)")
    p.add_argument("--per-cpu", action="store_true",
                   help="also write one profile per CPU process (FILE-cpuN.EXT)")
    p.add_argument("--harness", action="store_true",
                   help="keep the harness's samples (parent, log thread, resource tracker) in "
                        "one tower of their own instead of dropping them")


def _predict_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--predict", action="store_true",
                   help="beside each measurement, what queueing theory predicts from its own "
                        "time outside and inside its hottest lock (M/M/1//N; for spinlocks also "
                        "the Boyd-Wickizer ticket-lock model), with the relative error")
    p.add_argument("--handoff-ns", type=float, default=DEFAULT_HANDOFF_NS, metavar="NS",
                   help="cost of one lock hand-off between CPUs for the ticket-lock model "
                        f"(default {DEFAULT_HANDOFF_NS}, measured by scripts/measure_handoff.py)")


def _demo_parser(sub: argparse._SubParsersAction[Parser], config: type[RunConfig]) -> None:
    """``demo``: reclaim-storm in four eras, side by side."""
    d = sub.add_parser("demo", help="reclaim-storm in 2.6.33, 2.6.34-rc1 (the seed), 2.6.34 and 2.6.36, "
                                    "side by side (about a minute)",
                       description="Run reclaim-storm in era 2.6.33, then 2.6.34-rc1 (the seed as "
                                   "committed), 2.6.34 (as released) and 2.6.36, on every online CPU and "
                                   "print each later era beside 2.6.33 with ratios and a line on what it "
                                   "changed.  reclaim-storm faults every page it unmaps straight back in: "
                                   "the seed keeps each page on its child's anon_vma; 2.6.34 as released "
                                   "moves it to the family's root anon_vma (the fix for the seed's oops), "
                                   "so its walks grow back as the run goes on; 2.6.36 keeps the seed's "
                                   "short walks, on the root's lock.")
    config_options(d, "demo", config, ("users", "pages", "duration", "cpus"))
    config_options(d, "demo", config)
    d.add_argument("--json", metavar="FILE",
                   help="write the demo document (schema rmap-stress-demo/2: each era's run, "
                        "2.6.33, 2.6.34-rc1, 2.6.34 and 2.6.36; - : standard output)")
    d.add_argument("--quiet", action="store_true", help="no progress output")
    d.add_argument("--profile", action="store_true",
                   help="run each era under py-spy and write its CPUs' flamegraph, "
                        "profile-ERA.svg (needs py-spy and ptrace rights)")


def _scan_parser(sub: argparse._SubParsersAction[Parser], config: type[RunConfig]) -> None:
    """``scan``: exact walk statistics, no timing."""
    s = sub.add_parser("scan", help="exact walk statistics of the forking-server model (no timing)",
                       description="Build the model (a parent maps P pages, forks N children, each "
                                   "COWs a fraction F) and run page_referenced once on every page; "
                                   "report exactly how many list entries the walks visit.")
    _model_options(s, "scan", config)
    s.add_argument("--refault", nargs="?", const="write", default=None, choices=("write", "read", "cache"),
                   help="after the first pass, try_to_unmap every page and fault it back in from "
                        "each process that mapped it, then walk again (JSON walks: the second pass, "
                        "first_pass: the first).  write (default): pages dropped from the swap cache, "
                        "each owner write-faults them back; read: dropped, read faults; cache: "
                        "swap-cache hits, read faults")
    config_options(s, "scan", config, ("scenario", "generations", "pieces"))
    config_options(s, "scan", config)
    s.set_defaults(pages=None)  # 100, or for mprotect-split --pieces (see cmd_scan)


def _run_parser(sub: argparse._SubParsersAction[Parser], config: type[RunConfig]) -> None:
    """``run``: a stress run on CPU worker processes."""
    r = sub.add_parser("run", help="a stress run on real CPU worker processes",
                       description="A stress run: W worker processes, pinned one per CPU, share the "
                                   "model in shared memory and take its real locks.")
    _model_options(r, "run", config)
    _run_options(r, "run", config)
    _predict_options(r)


def _profile_parser(sub: argparse._SubParsersAction[Parser], config: type[RunConfig]) -> None:
    """``profile``: ``run`` under py-spy."""
    pr = sub.add_parser("profile", allow_abbrev=False,
                        help="a stress run under py-spy: where the CPUs' time goes",
                        description="`run` with the same options under `py-spy record "
                                    "--subprocesses --idle`: a flamegraph (SVG), a speedscope "
                                    "profile (JSON) or raw collapsed stacks.  Needs py-spy and "
                                    "ptrace rights.")
    _profile_options(pr)
    _model_options(pr, "profile", config)
    _run_options(pr, "profile", config)


def _ramp_parser(sub: argparse._SubParsersAction[Parser], config: type[RunConfig]) -> None:
    """``ramp``: the AIM7-style ramp of users per era."""
    rp = sub.add_parser("ramp", help="AIM7-style ramp of users per era: the crossover curve",
                        description="For each era and user count, a forking-server run on the same "
                                    "RAM; prints reaim's table, each era's crossover and the ratio.")
    rp.add_argument("--era", action="append", metavar="ERA", dest="eras",
                    help=f"an era to ramp (repeatable; default 2.6.33 and 2.6.34); "
                         f"one of {', '.join(ERAS)}")
    rp.add_argument("--start-users", type=int, default=100, metavar="A",
                    help="first user count (default 100)")
    rp.add_argument("--end-users", type=int, default=3200, metavar="B", help="last user count (default 3200)")
    g = rp.add_mutually_exclusive_group()
    g.add_argument("--increment", type=int, metavar="K", help="add K users per step")
    g.add_argument("--factor", type=float, metavar="X", help="multiply users by X per step (default 2)")
    config_options(rp, "ramp", config, ("duration", "cpus"))
    rp.add_argument("--repeat", type=int, default=1, metavar="R", help="runs per point (default 1)")
    rp.add_argument("--crossover", action="store_true", help="stop an era's ramp once past its crossover")
    rp.add_argument("--threshold", type=float, default=1.0, metavar="J",
                    help="crossover: jobs/min per user below this (default 1.0, as reaim)")
    config_options(rp, "ramp", config,
                   ("pages", "cow", "ram_pages", "work_us", "entry_cost_ns", "seed", "lock"))
    rp.add_argument("--json", metavar="FILE",
                    help="write the ramp document (schema rmap-stress-ramp/2; - : standard output)")
    rp.add_argument("--csv", metavar="FILE", help="write one row per run (- : standard output)")
    rp.add_argument("--plot", metavar="FILE", help="draw the curves (.png or .svg)")
    rp.add_argument("--log", action="store_true", dest="log_jobs",
                    help="--plot: jobs/min on a log axis (a collapse of 100x is flat on a linear one)")
    rp.add_argument("--quiet", action="store_true", help="no progress bar")
    config_options(rp, "ramp", config, SWAP_FIELDS)
    rp.add_argument("--live", action="store_true",
                    help="on a terminal, the live per-CPU view during each point instead of the bar")
    _predict_options(rp)
    config_options(rp, "ramp", config)


def _scale_parser(sub: argparse._SubParsersAction[Parser], config: type[RunConfig]) -> None:
    """``scale``: throughput and lock wait against CPUs."""
    sc = sub.add_parser("scale", conflict_handler="resolve",
                        help="will-it-scale style: throughput and lock wait against CPUs, per era "
                             "and lock primitive",
                        description="For each era, lock primitive and CPU count, one run; prints "
                                    "throughput, throughput per CPU, the linear line from the first "
                                    "point and lock wait share against CPUs.  Repeats are "
                                    "interleaved: every point once per round.")
    _model_options(sc, "scale", config)
    _run_options(sc, "scale", config)
    _predict_options(sc)
    # resolve: scale's own --era, --lock (repeatable) and --cpus-list replace run's
    sc.add_argument("--era", action="append", dest="eras", metavar="ERA",
                    help=f"an era (repeatable; default 2.6.33); one of {', '.join(ERAS)}")
    sc.add_argument("--lock", action="append", dest="locks", metavar="KIND",
                    help="a lock primitive, as run's --lock (repeatable; default: the era's own). "
                         "The same one twice is an A/A check: two curves, the second labelled #2")
    sc.add_argument("--cpus", type=int, default=0, help=argparse.SUPPRESS)
    sc.add_argument("--cpus-list", metavar="N,N,...",
                    help="CPU counts (default: powers of two up to the online CPUs, then twice "
                         "as many workers as CPUs, oversubscribed)")
    sc.add_argument("--repeat", type=int, default=1, metavar="R",
                    help="rounds: every point once per round (default 1)")
    sc.add_argument("--json", metavar="FILE",
                    help="write the scale document (schema rmap-stress-scale/2; - : standard output)")
    sc.add_argument("--csv", metavar="FILE", help="write one row per run (- : standard output)")
    sc.add_argument("--plot", metavar="FILE", help="draw the curves (.png or .svg)")


def _predict_parser(sub: argparse._SubParsersAction[Parser]) -> None:
    """``predict``: queueing theory for saved results."""
    pd = sub.add_parser("predict", help="queueing-theory predictions for saved results",
                        description="For a saved run, demo, ramp or scale file: the M/M/1//N (and "
                                    "for spinlocks the Boyd-Wickizer ticket-lock) prediction of "
                                    "each run's lock wait share and throughput, beside the "
                                    "measurement, with the relative error.")
    pd.add_argument("results", metavar="RESULTS.json")
    pd.add_argument("--handoff-ns", type=float, default=DEFAULT_HANDOFF_NS, metavar="NS",
                    help=f"lock hand-off cost for the ticket-lock model (default {DEFAULT_HANDOFF_NS})")


def _plot_parser(sub: argparse._SubParsersAction[Parser]) -> None:
    """``plot``: draw a saved results file."""
    pl = sub.add_parser("plot", help="draw a saved results file (run, demo, ramp or scale) as PNG or SVG",
                        description="Draw the pictures of a results file: for a ramp the AIM7 curve "
                                    "with crossovers, CPU time shares against users and the lock wait "
                                    "distribution; for a run or demo the per-CPU shares and wait CDF.")
    pl.add_argument("results", metavar="RESULTS.json")
    pl.add_argument("-o", "--output", required=True, metavar="FILE", help="output file, .png or .svg")
    pl.add_argument("--log", action="store_true", dest="log_jobs",
                    help="ramp files: jobs/min on a log axis (a collapse of 100x is flat on a linear one)")


def _compare_parser(sub: argparse._SubParsersAction[Parser]) -> None:
    """``compare``: saved results side by side."""
    cp = sub.add_parser("compare", help="headline figures of saved results side by side, with t-tests",
                        description="Side-by-side table of saved results (runs, demos or ramps) with "
                                    "ratios to the first; repeated runs get a Welch t-test and "
                                    "pyperf-style verdicts and instability warnings.")
    cp.add_argument("files", nargs="+", metavar="RESULTS.json")


def _eras_parser(sub: argparse._SubParsersAction[Parser]) -> None:
    """``eras``: the kernel eras modelled."""
    er = sub.add_parser("eras", help="the kernel eras modelled: linking, walk, lock, what each fixed",
                        description="One row per era: how VMAs are linked to anon_vmas, how a walk "
                                    "finds them, which lock it takes and its primitive, what the "
                                    "era's change fixed and the kernel commit.")
    er.add_argument("--json", metavar="FILE",
                    help="write the table (schema rmap-stress-eras/1; - : standard output)")


def _story_parser(sub: argparse._SubParsersAction[Parser], config: type[RunConfig]) -> None:
    """``story``: each era's motivating scenario."""
    st = sub.add_parser("story", help="the anon_vma story: each era's motivating scenario, briefly "
                                      "(a few minutes)",
                        description="Runs, briefly, the seed pair (2.6.33 vs 2.6.34 reclaim-storm) "
                                    "and each later era's motivating scenario against the eras "
                                    "beside it; one line per chapter with its measured headline.")
    config_options(st, "story", config, ("duration", "cpus"))
    config_options(st, "story", config)
    st.add_argument("--json", metavar="FILE",
                    help="write every chapter's results (schema rmap-stress-story/2; - : standard output)")
    st.add_argument("--quiet", action="store_true", help="no progress output")


def build_parser(config: type[RunConfig] = RunConfig) -> Parser:
    """The parser; ``config`` the RunConfig (sub)class whose fields are the run options."""
    parser = Parser(
        prog=PROG,
        description="Reproduce the 2010 anon_vma lock collapse with real processes, shared "
                    "memory and real locks, and measure it.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    _demo_parser(sub, config)
    _scan_parser(sub, config)
    _run_parser(sub, config)
    _profile_parser(sub, config)
    _ramp_parser(sub, config)
    _scale_parser(sub, config)
    _predict_parser(sub)
    _plot_parser(sub)
    _compare_parser(sub)
    torture_parser(sub)
    _eras_parser(sub)
    _story_parser(sub, config)
    return parser


def _inject(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        name, _, value = item.partition("=")
        if name != "alloc-fail" or not value:
            raise ConfigError(f"--inject {item!r}: the fault known is alloc-fail=P")
        try:
            out["alloc_fail_p"] = float(value)
        except ValueError:
            raise ConfigError(f"--inject {item!r}: P must be a number in [0, 1]") from None
    return out


# Every option that writes a file, as (attribute, option as the user types it); only
# --json and --csv may be ``-`` (standard output).
OUTPUT_OPTIONS = (("json", "--json"), ("csv", "--csv"), ("plot", "--plot"), ("log_file", "--log-file"),
                  ("output", "-o"), ("out", "-o"), ("internal_json", "--internal-json"))
STDOUT_OPTIONS = ("--json", "--csv")


def _outputs(a: argparse.Namespace) -> list[tuple[str, str | None]]:
    return [(opt, getattr(a, attr)) for attr, opt in OUTPUT_OPTIONS if hasattr(a, attr)]


def _check_outputs(a: argparse.Namespace) -> None:
    """Before any work: every output path writable, ``-`` only where it means stdout, no
    two options naming one file (the second would replace the first at the end)."""
    check_outputs(_outputs(a), STDOUT_OPTIONS)


def config_from_args(a: argparse.Namespace, **over: Any) -> RunConfig:
    """The RunConfig of the parsed options: every field that is an option of the command
    (the others keep their defaults), ``--inject``'s, then ``over``."""
    config: type[RunConfig] = getattr(a, "run_config", RunConfig)
    fields = {f.name: getattr(a, f.name) for f in dataclasses.fields(config) if hasattr(a, f.name)}
    return config(**{**fields, **_inject(getattr(a, "inject", [])), **over})


def _setup_logging(level: str, path: str | None) -> None:
    """One log stream from every CPU: the root handler is wrapped by multiprocessing-logging
    before any thread or worker exists (its queue thread plus a later fork cannot then
    inherit a held lock)."""
    import multiprocessing_logging

    global _log_file
    # delay: the file is made by the first record, so a run that logs nothing writes nothing
    _log_file = logging.FileHandler(path, delay=True) if path else None
    handler: logging.Handler = _log_file or logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(processName)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    multiprocessing_logging.install_mp_handler()


_log_file: logging.FileHandler | None = None


def _wrote_log(path: str | None) -> None:
    """``--log-file``: reported when something was logged there (the file was opened)."""
    if path and _log_file is not None and _log_file.stream is not None:
        _log_file.flush()
        ui.wrote(path)


def cmd_scan(a: argparse.Namespace) -> int:
    from .commands.scan import scan, scan_report

    if a.pages is None:  # mprotect-split's own defaults must work: a page per piece
        a.pages = max(a.pieces, 1) if a.scenario == "mprotect-split" else 100

    if a.scenario is not None:
        if a.refault is not None:
            raise ConfigError("--refault applies to the fork family scan, not to --scenario")
        return _cmd_scan_scenario(a)
    del a.scenario, a.generations, a.pieces  # scan --scenario's alone
    res = scan(config_from_args(a), progress=ui.scan_progress(False), refault=a.refault)
    if a.json:
        write_json(a.json, res)
    print(scan_report(res))
    if a.json:
        ui.wrote(a.json)
    return 1 if res["invariants"]["violations"] else 0


def _cmd_scan_scenario(a: argparse.Namespace) -> int:
    """``scan --scenario``: fork-chain or mprotect-split.  Exit 1, with one line, when a
    fork-chain stopped early because the segment was about to fill."""
    from .commands.scan import ScanStopped, scan_scenario, scan_scenario_report

    if a.scenario not in SCAN_SCENARIOS:
        raise ConfigError(f"unknown scan scenario {a.scenario!r} (choose from {', '.join(SCAN_SCENARIOS)})")
    cfg = config_from_args(a)
    status = 0
    try:
        res = scan_scenario(cfg, progress=ui.scan_progress(False))
    except ScanStopped as e:
        res, status = e.results, 1
        ui.end_progress(False)
        print(f"{PROG}: {e}", file=sys.stderr)
    if a.json:
        write_json(a.json, res)
    print(scan_scenario_report(res))
    if a.json:
        ui.wrote(a.json)
    return 1 if res.get("invariants", {}).get("violations") else status


def cmd_run(a: argparse.Namespace) -> int:
    from .analysis import report
    from .engine.runner import RunFailed, RunInterrupted, run

    cfg = _run_config(a)
    _note_no_live(a)
    _note_injection(cfg)
    _note_no_reuse(cfg)
    _check_handoff(a.handoff_ns)
    _setup_logging(a.log_level, a.log_file)
    progress = ui.run_progress(a.quiet, f"{cfg.era} {cfg.scenario}", a.live)
    view = progress if hasattr(progress, "update") else None
    on_phase = ui.phase_line(a.quiet)
    try:
        if view is not None:  # the live view: a frame 4 times a second
            res = run(cfg, on_tick=view.update, tick_s=0.25, stall_timeout=a.stall_timeout or None,
                      on_phase=on_phase)
        else:
            res = run(cfg, on_tick=progress, stall_timeout=a.stall_timeout or None, on_phase=on_phase)
        status = 1 if res["invariants"]["violations"] else 0
    except RunInterrupted as e:
        ui.end_progress(a.quiet)
        status = 128 + e.signum
        if e.results is None:
            print(f"{PROG}: {e}: nothing was measured, no results", file=sys.stderr)
            return status
        res = e.results
        print(f"{PROG}: interrupted: partial results of {res['elapsed_s']:.1f} s follow", file=sys.stderr)
    except RunFailed as e:
        ui.end_progress(a.quiet)
        print(f"{PROG}: run failed: {e}", file=sys.stderr)
        if e.results is None:
            return 1
        res, status = e.results, 1
    ui.end_progress(a.quiet)
    if a.predict:
        from .analysis.predict import predict_run

        try:
            res["predicted"] = predict_run(res, a.handoff_ns)
        except PredictError as e:  # the run's own status stands
            print(f"{PROG}: no prediction: {e}", file=sys.stderr)
    # The results first: a reader that stops reading, or a second Ctrl-C, cannot lose them.
    if a.json:
        write_json(a.json, res)
    if a.internal_json:
        write_json(a.internal_json, res)
    try:
        print(report.run_report(res))
        if res.get("predicted"):
            from .analysis.predict import format_prediction

            print()
            print(format_prediction(res["predicted"]))
        if a.json:
            ui.wrote(a.json)
        _wrote_log(a.log_file)
        sys.stdout.flush()
    except BrokenPipeError:
        _stdout_gone()
    return status


def _run_config(a: argparse.Namespace) -> RunConfig:
    """``run``'s configuration from its arguments, validated (ConfigError otherwise): a scan
    scenario, a negative --stall-timeout, and --live with --quiet are refused too."""
    cfg = config_from_args(a)
    cfg.validate()
    if cfg.scenario in SCAN_SCENARIOS and cfg.scenario not in SCENARIOS:
        raise ConfigError(f"{cfg.scenario} is a scan scenario: rmap-stress scan --scenario {cfg.scenario}")
    if a.stall_timeout < 0:
        raise ConfigError(f"--stall-timeout must be >= 0, not {a.stall_timeout}")
    if a.live and a.quiet:
        raise ConfigError("--live and --quiet contradict each other: choose one")
    return cfg


def _note_no_reuse(cfg: RunConfig) -> None:
    """cve-2022-42703 needs anon_vma reuse (3.19's degree, 6.0's num_active_vmas): on an
    era without it the run is fine and shows nothing, which should not pass for a fix."""
    from shared_model.eras import get_era

    if cfg.scenario == "cve-2022-42703" and get_era(cfg.era).reuse == "none":
        print(f"{PROG}: note: era {cfg.era} never reuses an anon_vma (anon_vma_clone's reuse came "
              f"in 3.19): cve-2022-42703 cannot happen here, so a clean run shows nothing",
              file=sys.stderr)


def _note_injection(cfg: RunConfig) -> None:
    """One line when --inject has nothing to fail: allocations of anon_vmas and AVCs happen
    at fork and COW, which only forking-server does after the build, and 2.6.33 allocates
    no anon_vma after the family's first (every child links into it) and no AVC at all."""
    from shared_model.eras import get_era

    if not cfg.alloc_fail_p:
        return
    if not get_era(cfg.era).chain:
        why = (f"era {cfg.era} has one anon_vma per family and no anon_vma_chain: "
               f"no allocation to fail")
    elif cfg.scenario not in ("forking-server", "fork-test", "exim"):
        why = f"{cfg.scenario} forks nothing after the build: no allocation to fail"
    else:
        return
    print(f"{PROG}: note: --inject alloc-fail does nothing here: {why}", file=sys.stderr)


def _run_argv(profile_argv: list[str]) -> list[str]:
    """The arguments after ``profile`` that are ``run``'s, in order: all but the profile
    options (parsed by themselves, so ``-oFILE`` and ``--rate=50`` come out too)."""
    p = Parser(add_help=False, allow_abbrev=False)
    _profile_options(p)
    return p.parse_known_args(profile_argv)[1]


def cmd_profile(a: argparse.Namespace, argv: list[str]) -> int:
    from .commands.profile import FORMATS, ProfileError, format_summary, record, summarize_raw

    cfg = config_from_args(a)
    cfg.validate()  # a bad option is a usage error now, not a profile of a failed run
    out = a.out or f"profile-{cfg.era}.{FORMATS[a.profile_format]}"
    check_outputs([("-o", out)] + [o for o in _outputs(a) if o[0] != "-o"], STDOUT_OPTIONS)
    summary: list[str] = []
    try:
        res = record(_run_argv(argv[argv.index("profile") + 1:]), out, a.profile_format,
                     a.native, a.rate, per_cpu=a.per_cpu, harness=a.harness,
                     summary=lambda raw: summary.append(format_summary(summarize_raw(raw))))
    except ProfileError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    if a.profile_format == "raw":
        print("\n".join(summary))
    print(res.describe(a.harness))
    for f in res.files:
        ui.wrote(f)
    return res.rc


def cmd_demo(a: argparse.Namespace) -> int:
    from .commands.demo import DEMO_ERAS, demo

    _setup_logging("WARNING", None)
    cfgs = [config_from_args(a, era=era, scenario="reclaim-storm") for era in DEMO_ERAS]
    for cfg in cfgs:
        cfg.validate()
    results, stop, elapsed = demo(cfgs, a.quiet, a.profile)
    if a.json and (results or stop):
        write_json(a.json, {"schema": SCHEMA_DEMO, "eras": results, "elapsed_s": elapsed, **stop})
        ui.wrote(a.json)
    if stop:
        return status_of(stop["interrupted"])
    bad = sum(r["invariants"]["violations"] for r in results.values())
    return 1 if bad else 0


def cmd_ramp(a: argparse.Namespace) -> int:
    from .commands.ramp import headline, ramp, ramp_table, user_counts, write_csv

    users = user_counts(a.start_users, a.end_users, a.increment,
                        a.factor if a.factor is not None or a.increment is not None else 2.0)
    if a.plot and not a.plot.endswith((".png", ".svg")):
        raise ConfigError(f"--plot {a.plot}: the file name must end in .png or .svg")
    if a.log_jobs and not a.plot:
        raise ConfigError("--log draws --plot's jobs/min axis on a log scale: give --plot FILE too")
    _check_eras_once(a.eras or [], "--era")
    if a.live and a.quiet:
        raise ConfigError("--live and --quiet contradict each other: choose one")
    _note_no_live(a)
    base = config_from_args(a, scenario="forking-server")
    base.validate_swap()
    _setup_logging("WARNING", None)
    live = ui.live_views(a.live and not a.quiet)
    _check_handoff(a.handoff_ns)
    doc = ramp(a.eras or ["2.6.33", "2.6.34"], users, base, repeat=a.repeat,
               stop_at_crossover=a.crossover, threshold=a.threshold,
               progress=None if a.quiet or live else ui.ProgressBar(), live=live,
               predict=a.predict, handoff_ns=a.handoff_ns)
    _say_stop(doc, len(doc["points"]))
    print(ramp_table(doc))
    print()
    print(headline(doc))
    if a.predict:
        from .analysis.predict import prediction_table

        print()
        print(prediction_table([(f"{p['era']} {p['users']} users #{p['repeat'] + 1}", p["predicted"])
                                for p in doc["points"] if p.get("predicted")]))
    _write_sweep(a, doc, write_csv)
    return _sweep_status(doc)


def _cpus(n: int) -> str:
    return f"{n} CPU{'s' if n != 1 else ''}"


def _check_handoff(ns: float) -> None:
    if not ns >= 0:
        raise ConfigError(f"--handoff-ns must be >= 0, not {ns}")


def cmd_scale(a: argparse.Namespace) -> int:
    from .commands.scale import curves_of, default_cpus_list, parse_cpus_list, scale, scale_table, write_csv
    from .engine.config import online_cpus

    if a.cpus:
        raise ConfigError("scale takes --cpus-list N,N,..., not --cpus")
    if a.plot and not a.plot.endswith((".png", ".svg")):
        raise ConfigError(f"--plot {a.plot}: the file name must end in .png or .svg")
    if a.live and a.quiet:
        raise ConfigError("--live and --quiet contradict each other: choose one")
    _note_no_live(a)
    _check_handoff(a.handoff_ns)
    cpus_list = parse_cpus_list(a.cpus_list) if a.cpus_list is not None else default_cpus_list(online_cpus())
    curves = curves_of(a.eras or ["2.6.33"], list(a.locks or [None]))
    base = config_from_args(a, era=curves[0].era, lock=None, cpus=cpus_list[0])
    if a.stall_timeout < 0:
        raise ConfigError(f"--stall-timeout must be >= 0, not {a.stall_timeout}")
    _setup_logging(a.log_level, a.log_file)
    live = ui.live_views(a.live and not a.quiet)
    doc = scale(base, curves, cpus_list, repeat=a.repeat, predict=a.predict, handoff_ns=a.handoff_ns,
                stall_timeout=a.stall_timeout or None,
                progress=None if a.quiet or live else ui.ProgressBar(), live=live)
    _say_stop(doc, len(doc["points"]))
    print(scale_table(doc))
    if a.predict:
        from .analysis.predict import prediction_table

        print()
        print(prediction_table([(f"{p['curve']}, {_cpus(p['cpus'])} #{p['repeat'] + 1}", p["predicted"])
                                for p in doc["points"] if p.get("predicted")]))
    _write_sweep(a, doc, write_csv)
    _wrote_log(a.log_file)
    return _sweep_status(doc)


def _check_eras_once(eras: list[str], option: str) -> None:
    twice = sorted({e for e in eras if eras.count(e) > 1})
    if twice:
        raise ConfigError(f"{option} {twice[0]} given twice: each era is ramped once (--repeat R "
                          f"runs every point R times)")


def _note_no_live(a: argparse.Namespace) -> None:
    if a.live and not a.quiet and not sys.stderr.isatty():
        print(f"{PROG}: note: --live needs a terminal on stderr; showing a status line every "
              f"few seconds instead", file=sys.stderr)


def _say_stop(doc: dict[str, Any], points: int) -> None:
    """One line on stderr when a signal or a failure ended a sweep early."""
    if doc.get("interrupted"):
        print(f"{PROG}: interrupted by {doc['interrupted']}: {points} point{'s' if points != 1 else ''} "
              f"kept (a point cut short is marked)", file=sys.stderr)
    elif doc.get("failed"):
        print(f"{PROG}: run failed: {doc['failed']}: the points before it are kept", file=sys.stderr)


def _write_sweep(a: argparse.Namespace, doc: dict[str, Any], write_csv: Callable[..., None]) -> None:
    """A ramp's or a scale's files (what was measured, even when cut short), each reported."""
    if a.json:
        write_json(a.json, doc)
        ui.wrote(a.json)
    if a.csv:
        write_csv(a.csv, doc)
        ui.wrote(a.csv)
    if a.plot and doc["points"]:
        from .analysis.plot import plot_results

        plot_results(doc, a.plot, **({"log_jobs": a.log_jobs} if hasattr(a, "log_jobs") else {}))
        ui.wrote(a.plot)


def _sweep_status(doc: dict[str, Any]) -> int:
    if doc.get("interrupted"):
        return status_of(doc["interrupted"])
    bad = sum(p.get("invariant_violations", 0) for p in doc["points"])
    return 1 if bad or doc.get("failed") else 0


def cmd_predict(a: argparse.Namespace) -> int:
    from .analysis.compare import load_for_compare
    from .analysis.predict import format_prediction, predict_inputs, predict_run, prediction_table
    from .engine.results import stop_notes

    _check_handoff(a.handoff_ns)
    doc = load_for_compare(a.results)
    for note in stop_notes(doc):
        print(f"{PROG}: warning: {a.results}: {note}", file=sys.stderr)
    schema = doc["schema"]
    with _reading(a.results):
        if doc["schema"] == SCHEMA_RUN:
            print(format_prediction(predict_run(doc, a.handoff_ns)))
        elif doc["schema"] == SCHEMA_DEMO:
            print("\n\n".join(f"== {era} ==\n" + format_prediction(predict_run(r, a.handoff_ns))
                               for era, r in doc["eras"].items()))
        else:
            def label(p: dict[str, Any]) -> str:
                if schema == SCHEMA_RAMP:
                    return f"{p['era']} {p['users']} users #{p['repeat'] + 1}"
                return f"{p['curve']}, {_cpus(p['cpus'])} #{p['repeat'] + 1}"

            entries = []
            for p in doc["points"]:
                if p.get("lock_inputs"):
                    try:
                        entries.append((label(p), predict_inputs(p["lock_inputs"], a.handoff_ns)))
                    except PredictError:
                        pass
            if not entries:
                raise ResultsError(f"{a.results}: its points hold no lock figures to predict from "
                                   f"(written by an older rmap-stress?)")
            print(prediction_table(entries))
    return 0


@contextlib.contextmanager
def _reading(label: str) -> Iterator[None]:
    """Around a reader of a loaded document: a field load() does not check (the readers
    go deeper than its shape) that is missing or mistyped is one line, not a traceback."""
    try:
        yield
    except (KeyError, TypeError, IndexError, AttributeError, ZeroDivisionError, OverflowError) as e:
        what = f"missing {e}" if isinstance(e, KeyError) else str(e)
        raise ResultsError(f"{label}: damaged results document ({what})") from None
    except PredictError as e:  # a document whose figures cannot carry a prediction
        raise ResultsError(f"{label}: {e}") from None


def cmd_plot(a: argparse.Namespace) -> int:
    from .analysis.compare import load_for_compare
    from .analysis.plot import plot_results

    if not a.output.lower().endswith((".png", ".svg")):
        raise ConfigError(f"-o {a.output}: the file name must end in .png or .svg")
    doc = load_for_compare(a.results)
    with _reading(a.results):
        plot_results(doc, a.output, log_jobs=a.log_jobs)
    ui.wrote(a.output)
    return 0


def cmd_compare(a: argparse.Namespace) -> int:
    from .analysis.compare import compare, load_for_compare
    from .engine.results import content_hash

    seen: dict[str, str] = {}
    for path in a.files:
        key = os.path.realpath(path)
        if key in seen:
            raise ConfigError(f"{path}: given twice (as {seen[key]}): one file is one measurement, "
                              f"not two repeats")
        seen[key] = path
    docs = [(p, load_for_compare(p)) for p in a.files]
    same: dict[str, str] = {}
    for path in a.files:
        digest = content_hash(path)
        if digest in same:
            raise ConfigError(f"{path} has the same content as {same[digest]}: a copy of one "
                              f"measurement, not a second repeat")
        same[digest] = path
    with _reading(", ".join(a.files)):
        print(compare(docs))
    return 0


def cmd_eras(a: argparse.Namespace) -> int:
    from .commands.story import era_row, eras_table

    print(eras_table())
    if a.json:
        write_json(a.json, {"schema": SCHEMA_ERAS, "eras": [era_row(e) for e in ERAS.values()]})
        ui.wrote(a.json)
    return 0


def cmd_story(a: argparse.Namespace) -> int:
    from .commands.story import story
    from .engine.runner import run

    if not 0 < a.duration < 1e7:
        raise ConfigError(f"--duration must be a positive, finite number of seconds, not {a.duration}")
    if a.cpus < 0:
        raise ConfigError(f"--cpus must be a positive count, not {a.cpus}")
    _setup_logging("WARNING", None)

    def one(cfg: RunConfig) -> dict[str, Any]:
        if not a.quiet:
            print(f"  {cfg.scenario} on {cfg.era} ...", file=sys.stderr, flush=True)
        return run(cfg)

    def one_scan(cfg: RunConfig) -> dict[str, Any]:
        from .commands.scan import scan_scenario

        if not a.quiet:
            print(f"  scan {cfg.scenario} on {cfg.era} ...", file=sys.stderr, flush=True)
        return scan_scenario(cfg)

    doc = story(a.duration, a.cpus, one, lambda line: print(line, flush=True), scan=one_scan)
    print(f"({doc['elapsed_s']:.0f} s)")
    if doc.get("interrupted"):
        print(f"{PROG}: interrupted by {doc['interrupted']}: the chapters completed and the runs of "
              f"the one under way are kept", file=sys.stderr)
    if a.json:
        write_json(a.json, doc)
        ui.wrote(a.json)
    if doc.get("interrupted"):
        return status_of(doc["interrupted"])
    # The CVE chapter's 3.19 violations are its point; any other violation fails the story.
    bad = sum(ch.get("unexpected_violations", 0) for ch in doc["chapters"])
    return 1 if bad else 0


def main(argv: Sequence[str] | None = None, config: type[RunConfig] = RunConfig) -> int:
    """``config``: the RunConfig (sub)class whose fields are the run options."""
    parser = build_parser(config)
    try:
        a = parser.parse_args(argv)
        a.run_config = config
        if not a.command:
            parser.print_help()
            return 2
        commands = {"scan": cmd_scan, "run": cmd_run, "demo": cmd_demo, "ramp": cmd_ramp,
                    "plot": cmd_plot, "compare": cmd_compare, "scale": cmd_scale,
                    "predict": cmd_predict, "eras": cmd_eras, "story": cmd_story,
                    "torture": cmd_torture}
        # ``--json -`` / ``--csv -``: the document alone on stdout, the report on stderr.
        with report_to_stderr(any(path == STDOUT for _, path in _outputs(a))):
            if a.command == "profile":
                return cmd_profile(a, list(sys.argv[1:] if argv is None else argv))
            _check_outputs(a)
            return commands[a.command](a)
    except (UsageError, ConfigError, ModelTooLarge, ResultsError, PredictError, ValueError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        _stdout_gone()
        return 0
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except RuntimeError as e:
        signum = getattr(e, "signum", None)
        if signum:  # RunInterrupted outside `run` (demo, ramp): nothing partial to print
            print(f"{PROG}: {e}", file=sys.stderr)
            return 128 + int(signum)
        print(f"{PROG}: run failed: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2


def _stdout_gone() -> None:
    """The reader of stdout went away (``| head``): say nothing more there, and keep the
    interpreter's final flush from complaining."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
