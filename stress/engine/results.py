"""Result documents: the versioned JSON the commands write and read (ids are a contract),
and the one way an output file is written.

Every document is a JSON object whose ``schema`` names its kind and version.  ``load()``
is the only reader: it refuses what is not JSON, another kind, or a damaged document (a
field missing or of the wrong type) with one line naming the file and the field, and it
brings a previous version's document to the current shape, so readers see one shape per
kind.  ``write_output()`` is the only writer (see its docstring for what a path may name).

Format history (newest first; as pyperf's, a version changes when a reader would have to):

* run ``rmap-stress-run/2``: the run's own id.  ``rmap-stress/1`` (shared with scan) loads
  as run/2 when it has ``throughput``.  Optional since /2: ``interrupted`` (true: a signal
  stopped the run early; ``elapsed_s`` is what was measured), ``aborted`` (a second signal:
  the model was not checked), ``failed`` ({reason, cpu_states, note}).
* scan ``rmap-stress-scan/2``: exact walk counts.  ``rmap-stress/1`` without ``throughput``
  loads as scan/2.
* demo ``rmap-stress-demo/2``: {schema, eras: {era: run}, elapsed_s, interrupted?}.  /1
  (never named) was the bare {era: run} object, which loads as /2.
* ramp ``rmap-stress-ramp/2``: adds ``interrupted`` (the signal's name, or absent),
  ``elapsed_s``, and per point ``interrupted`` (the point a signal cut short: its partial
  figures).  /1 loads as /2 (nothing interrupted).
* scale ``rmap-stress-scale/2``: as ramp/2.  /1 loads as /2.
* story ``rmap-stress-story/2``: adds ``interrupted``; a chapter a signal cut short holds
  the runs completed and ``interrupted: true``.  /1 loads as /2.
* eras ``rmap-stress-eras/1``: {schema, eras: [one row per era, as the ``eras`` table]}.
* profile ``rmap-stress-profile/1``: reserved.  ``profile`` writes py-spy's formats (SVG,
  speedscope JSON with its own ``$schema``, raw stacks) and, with ``--json``, a run document;
  a summary document of its own, when one comes, takes this id.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import stat
import sys
import tempfile
from collections.abc import Callable, Collection, Iterator
from importlib import metadata
from typing import IO, Any, TextIO

import psutil

SCHEMA_RUN = "rmap-stress-run/2"
SCHEMA_SCAN = "rmap-stress-scan/2"
SCHEMA_DEMO = "rmap-stress-demo/2"
SCHEMA_RAMP = "rmap-stress-ramp/2"
SCHEMA_SCALE = "rmap-stress-scale/2"
SCHEMA_STORY = "rmap-stress-story/2"
SCHEMA_ERAS = "rmap-stress-eras/1"
SCHEMA_PROFILE = "rmap-stress-profile/1"

KINDS = {SCHEMA_RUN: "run", SCHEMA_SCAN: "scan", SCHEMA_DEMO: "demo", SCHEMA_RAMP: "ramp",
         SCHEMA_SCALE: "scale", SCHEMA_STORY: "story", SCHEMA_ERAS: "eras",
         SCHEMA_PROFILE: "profile"}
SCHEMAS = {kind: schema for schema, kind in KINDS.items()}
# Previous versions: the id, and the kind it loads as (demo/1 had no id: see _upgrade).
PREVIOUS = {"rmap-stress/1": "run or scan", "rmap-stress-ramp/1": "ramp",
            "rmap-stress-scale/1": "scale", "rmap-stress-story/1": "story"}


class ResultsError(ValueError):
    """A results file that cannot be read as the kind a command expects (one line)."""


def package_version() -> str:
    """The installed version, or the source tree's (pyproject.toml) when run from it."""
    try:
        return metadata.version("rmap-stress")
    except metadata.PackageNotFoundError:
        pass
    try:
        import tomllib

        # stress/engine/results.py: the source tree is three levels up.
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        path = os.path.join(root, "pyproject.toml")
        with open(path, "rb") as fh:
            return str(tomllib.load(fh)["project"]["version"])
    except (OSError, KeyError, ValueError):
        return "0+unknown"


def machine_info() -> dict[str, Any]:
    affinity = sorted(os.sched_getaffinity(0))
    cpu_model = ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "online_cpus": psutil.cpu_count(logical=True),
        "affinity": affinity,
        "cpu_model": cpu_model,
        "loadavg": list(os.getloadavg()),
        "memory_bytes": psutil.virtual_memory().total,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "package_version": package_version(),
    }


# ---------------------------------------------------------------------------- writing

STDOUT = "-"
# Where ``-`` writes: the real standard output, kept here when the command's report was
# moved to stderr (``--json -``) so that the document alone reaches stdout.
_stdout: list[TextIO] = []


@contextlib.contextmanager
def report_to_stderr(active: bool) -> Iterator[None]:
    """While active, ``print`` goes to stderr and ``-`` still names the real stdout."""
    if not active:
        yield
        return
    _stdout.append(sys.stdout)
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        sys.stdout = _stdout.pop()


def _real_stdout() -> TextIO:
    return _stdout[-1] if _stdout else sys.stdout


def _target(path: str) -> tuple[str, os.stat_result | None]:
    """What a path names: symlinks followed (the target is what gets replaced) and its
    status, None when nothing is there yet."""
    real = os.path.realpath(path)
    try:
        return real, os.stat(real)
    except FileNotFoundError:
        return real, None


def output_key(path: str) -> tuple[Any, ...]:
    """Two paths with one key name one file: ``-``, the same inode, or the same new path."""
    if path == STDOUT:
        return ("stdout",)
    real, st = _target(path)
    return ("inode", st.st_dev, st.st_ino) if st is not None else ("new", real)


def check_output(option: str, path: str, stdout_ok: bool = False) -> None:
    """Refuse, before any work, a path the end of a long run could not write: an empty
    one, ``-`` where it cannot mean stdout, a folder, a device we may not write, or a
    folder where no temporary file (the atomic write's first step) can be made."""
    if path == "":
        raise ResultsError(f"{option}: an empty file name")
    if path == STDOUT:
        if not stdout_ok:
            raise ResultsError(f"{option} -: standard output is for --json and --csv only; "
                               f"name a file")
        return
    real, st = _target(path)
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise ResultsError(f"{option} {path}: is a folder")
    if st is not None and not stat.S_ISREG(st.st_mode):
        if not os.access(real, os.W_OK):
            raise ResultsError(f"{option} {path}: cannot write there (permission denied)")
        return
    folder = os.path.dirname(real) or "."
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".rmap-stress-", suffix=".tmp")
    except OSError as e:
        why = (e.strerror or str(e)).lower()
        raise ResultsError(f"{option} {path}: cannot write there ({why})") from None
    os.close(fd)
    os.unlink(tmp)


def check_outputs(outputs: list[tuple[str, str | None]], stdout_ok: Collection[str] = ()) -> None:
    """Every (option, path) given is writable and no two name one file (the second would
    replace the first's contents at the end of the run)."""
    seen: dict[tuple[Any, ...], str] = {}
    for option, path in outputs:
        if path is None:
            continue
        check_output(option, path, option in stdout_ok)
        key = output_key(path)
        if key in seen:
            where = "standard output" if path == STDOUT else path
            raise ResultsError(f"{seen[key]} and {option} both name {where}: give each its own file")
        seen[key] = option


def write_output(path: str, write: Callable[[IO[Any]], object], binary: bool = False) -> None:
    """Write a result file as a user expects of the path:

    * ``-``: standard output (the real one, see report_to_stderr);
    * a regular file, or nothing yet: a temporary file beside it, then a rename over it,
      so a reader never sees half a file (an existing file keeps its permission bits);
    * a symlink: followed, and its target replaced as above (the link stays a link);
    * a character device, FIFO or socket (``/dev/null``, ``/dev/stdout``, a pipe): written
      through, never replaced."""
    if path == STDOUT:
        out = _real_stdout()
        if binary:
            out.flush()
            write(out.buffer)
            out.buffer.flush()
        else:
            write(out)
            out.flush()
        return
    mode = "wb" if binary else "w"
    real, st = _target(path)
    if st is not None and not stat.S_ISREG(st.st_mode):
        with open(real, mode) as fh:
            write(fh)
        return
    folder = os.path.dirname(real) or "."
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(real)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
        if st is not None:
            os.chmod(tmp, stat.S_IMODE(st.st_mode))
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, real)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json(path: str, doc: dict[str, Any]) -> None:
    def dump(fh: IO[str]) -> None:
        json.dump(doc, fh, indent=1, sort_keys=False)
        fh.write("\n")

    write_output(path, dump)


# ---------------------------------------------------------------------------- reading

NUM = (int, float)


class Opt:
    """An optional key: absent, or as ``spec``."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec


class MapOf:
    """An object whose every value is as ``spec`` (keys are names: eras, bounds)."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec


NONE = type(None)
HIST = MapOf(NUM)
SHARES = {"work": NUM, "walk": NUM, "lock_wait": NUM, "other": Opt(NUM), "iowait": Opt(NUM)}
STATS = {"min": NUM, "max": NUM, "total": NUM, "avg": NUM, "p50": Opt(NUM), "p90": Opt(NUM),
         "p99": NUM, "p999": Opt(NUM)}
RUN_SPEC: dict[str, Any] = {
    "config": {"era": str, "scenario": str, "users": int, "pages": int, "cpus": int,
               "duration": NUM, "lock": Opt((str, NONE)), "cow": Opt(NUM), "seed": Opt(int)},
    "machine": dict,
    "elapsed_s": Opt(NUM),
    "walks": {"avg_visited": NUM, "max_visited": Opt(NUM), "count": Opt(int)},
    "locks": [{"class": str, "acquisitions": int, "contentions": int, "wait_ns": STATS,
               "hold_ns": Opt(STATS), "wait_hist": Opt(HIST), "sites": Opt([dict])}],
    "cpus": [{"cpu": int, "share": SHARES, "time_ns": Opt(NUM), "pid": Opt(int)}],
    "anon_vma_wait_share": NUM,
    "throughput": MapOf(NUM),
    "invariants": {"violations": int, "checked": Opt(bool), "messages": Opt([str])},
    "timeline": Opt([{"t": NUM, "cpus": Opt([{"lock_wait": Opt(NUM)}])}]),
    "interrupted": Opt(bool),
    "aborted": Opt(str),
    "failed": Opt({"reason": str}),
}
SCAN_SPEC: dict[str, Any] = {"config": dict, "model": Opt(dict), "walks": Opt(dict)}
RAMP_POINT = {"era": str, "users": int, "repeat": int, "jobs_per_min": NUM,
              "jobs_per_min_per_user": NUM, "system_share": NUM, "work_share": NUM,
              "walk_share": Opt(NUM), "lock_wait_share": Opt(NUM), "iowait_share": Opt(NUM),
              "pages_scanned_per_s": Opt(NUM), "avg_walk": Opt(NUM), "wait_hist": Opt(HIST),
              "elapsed_s": NUM, "invariant_violations": Opt(int), "lock_inputs": Opt(dict),
              "predicted": Opt(dict), "interrupted": Opt(bool)}
RAMP_SPEC: dict[str, Any] = {
    "config": {"eras": [str], "threshold": NUM, "duration": NUM, "cpus": int, "repeat": int,
               "start_users": Opt(int), "end_users": Opt(int), "ram_pages": Opt(int)},
    "machine": dict,
    "points": [RAMP_POINT],
    "crossover": MapOf({"users": (int, NONE), "system90_users": (int, NONE),
                        "peak_jobs_per_min": NUM, "iowait_share": Opt((NUM, NONE))}),
    "interrupted": Opt(str),
    "elapsed_s": Opt(NUM),
}
SCALE_POINT = {"era": str, "lock": (str, NONE), "curve": str, "cpus": int, "repeat": int,
               "oversubscribed": bool, "throughput_key": str, "throughput": NUM,
               "throughput_per_cpu": NUM, "wait_share": NUM, "anon_vma_wait_share": Opt(NUM),
               "avg_walk": Opt(NUM), "elapsed_s": NUM, "lock_inputs": Opt((dict, NONE)),
               "predicted": Opt(dict), "invariant_violations": Opt(int), "interrupted": Opt(bool)}
SCALE_SPEC: dict[str, Any] = {
    "config": {"curves": [{"label": str, "era": Opt(str), "lock": Opt((str, NONE))}],
               "cpus_list": Opt([int]), "repeat": int, "online_cpus": Opt(int),
               "scenario": Opt(str), "duration": Opt(NUM)},
    "machine": dict,
    "points": [SCALE_POINT],
    "interrupted": Opt(str),
    "elapsed_s": Opt(NUM),
}
STORY_SPEC: dict[str, Any] = {"chapters": [{"title": str, "results": Opt(MapOf(dict))}],
                              "elapsed_s": NUM, "interrupted": Opt(str)}
ERAS_SPEC: dict[str, Any] = {"eras": [MapOf(str)]}
SPECS = {"run": RUN_SPEC, "scan": SCAN_SPEC, "ramp": RAMP_SPEC, "scale": SCALE_SPEC,
         "story": STORY_SPEC, "eras": ERAS_SPEC, "profile": {}}


def _type_name(spec: Any) -> str:
    if isinstance(spec, tuple):
        names = sorted({_type_name(s) for s in spec})
        return " or ".join(names)
    if spec is NONE:
        return "null"
    if spec in (int, float):
        return "a number" if spec is float else "an integer"
    return {str: "a string", bool: "true or false", dict: "an object", list: "a list"}.get(spec, str(spec))


def _is(value: Any, types: Any) -> bool:
    types = types if isinstance(types, tuple) else (types,)
    flat: list[Any] = []
    for t in types:
        flat.extend(t if isinstance(t, tuple) else (t,))
    if isinstance(value, bool):
        return bool in flat
    if isinstance(value, float) and float in flat:
        return not math.isnan(value)
    return isinstance(value, tuple(flat))


def _check(value: Any, spec: Any, where: str) -> None:
    """Raise ResultsError naming the first field of ``value`` that is not as ``spec``."""
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            raise ResultsError(f"{where}: expected an object, found {_found(value)}")
        for key, sub in spec.items():
            opt = isinstance(sub, Opt)
            if key not in value:
                if opt:
                    continue
                raise ResultsError(f"{where}.{key}: missing")
            _check(value[key], sub.spec if opt else sub, f"{where}.{key}")
    elif isinstance(spec, list):
        if not isinstance(value, list):
            raise ResultsError(f"{where}: expected a list, found {_found(value)}")
        for i, item in enumerate(value):
            _check(item, spec[0], f"{where}[{i}]")
    elif isinstance(spec, MapOf):
        if not isinstance(value, dict):
            raise ResultsError(f"{where}: expected an object, found {_found(value)}")
        for key, item in value.items():
            _check(item, spec.spec, f"{where}.{key}")
    elif not _is(value, spec):
        raise ResultsError(f"{where}: expected {_type_name(spec)}, found {_found(value)}")


def _found(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    text = json.dumps(value) if isinstance(value, (int, float, str)) else type(value).__name__
    return text if len(text) < 40 else text[:37] + "..."


def upgrade(doc: Any) -> Any:
    """A previous version's document in the current shape (its kind's id), or as it was."""
    if not isinstance(doc, dict):
        return doc
    schema = doc.get("schema")
    if schema == "rmap-stress/1":
        return {**doc, "schema": SCHEMA_RUN if "throughput" in doc else SCHEMA_SCAN}
    if schema in ("rmap-stress-ramp/1", "rmap-stress-scale/1", "rmap-stress-story/1"):
        return {**doc, "schema": schema.replace("/1", "/2")}
    if "schema" not in doc and doc and all(isinstance(v, dict)
                                          and v.get("schema") in ("rmap-stress/1", SCHEMA_RUN)
                                          for v in doc.values()):
        return {"schema": SCHEMA_DEMO, "eras": {era: upgrade(r) for era, r in doc.items()}}
    return doc


def validate(doc: Any, label: str, kinds: Collection[str] | None = None) -> dict[str, Any]:
    """The document, upgraded and checked; ResultsError (one line) if it is not one of
    ``kinds`` (all when None) or a field is missing or mistyped."""
    doc = upgrade(doc)
    if not isinstance(doc, dict):
        raise ResultsError(f"{label}: not a results document (a JSON {_found(doc)}, not an object)")
    schema = doc.get("schema")
    kind = KINDS.get(schema) if isinstance(schema, str) else None
    if kind is None:
        raise ResultsError(f"{label}: schema {schema!r} is not one rmap-stress writes"
                           + (f" (expected {_kinds_text(kinds)})" if kinds else ""))
    if kinds is not None and kind not in kinds:
        raise ResultsError(f"{label}: a {kind} document; this takes {_kinds_text(kinds)}")
    if kind == "demo":
        try:
            _check(doc, {"eras": MapOf(dict), "interrupted": Opt(str), "elapsed_s": Opt(NUM)}, "")
        except ResultsError as e:
            raise ResultsError(f"{label}: damaged demo document: {str(e).lstrip('.')}") from None
        if not doc["eras"] and not doc.get("interrupted"):
            raise ResultsError(f"{label}: a demo document with no eras")
        for era, run in doc["eras"].items():
            _check_run(run, f"{label}: eras.{era}")
    elif kind == "run":
        _check_run(doc, label)
    else:
        try:
            _check(doc, SPECS[kind], "")
        except ResultsError as e:
            raise ResultsError(f"{label}: damaged {kind} document: {str(e).lstrip('.')}") from None
    return doc


def _check_run(run: Any, label: str) -> None:
    if not isinstance(run, dict) or KINDS.get(str(run.get("schema"))) != "run":
        got = run.get("schema") if isinstance(run, dict) else None
        raise ResultsError(f"{label}: schema {got!r}, expected {SCHEMA_RUN!r}")
    try:
        _check(run, RUN_SPEC, "")
    except ResultsError as e:
        raise ResultsError(f"{label}: damaged run document: {str(e).lstrip('.')}") from None
    if not run["cpus"]:
        raise ResultsError(f"{label}: damaged run document: cpus: an empty list")


def _kinds_text(kinds: Collection[str]) -> str:
    names = sorted(kinds)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def load(path: str, kinds: Collection[str] | None = None) -> dict[str, Any]:
    """Read and validate one results file (see validate); any trouble is one ResultsError."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ResultsError(f"{path}: is a folder, not a results file") from None
    except OSError as e:
        raise ResultsError(f"{path}: cannot read it ({(e.strerror or str(e)).lower()})") from None
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ResultsError(f"{path}: not a results file ({e})") from None
    return validate(doc, path, kinds)


def content_hash(path: str) -> str:
    """sha256 of a file's bytes: two files with one hash are one measurement."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 16), b""):
            h.update(block)
    return h.hexdigest()


def stop_notes(doc: dict[str, Any]) -> list[str]:
    """Why a document's figures are not those of a whole run: interrupted, aborted or
    failed runs, and points a signal cut short (empty for a complete document)."""
    kind = KINDS.get(doc.get("schema", ""), "")
    runs: list[tuple[str, dict[str, Any]]] = []
    notes: list[str] = []
    if kind == "run":
        runs = [("", doc)]
    elif kind == "demo":
        runs = [(f"{era}: ", r) for era, r in doc["eras"].items()]
    if doc.get("interrupted") and kind != "run":
        what = "eras" if kind == "demo" else "chapters" if kind == "story" else "points"
        notes.append(f"interrupted by {doc['interrupted']}: only the {what} completed are whole")
    for label, r in runs:
        planned = r["config"]["duration"]
        measured = r.get("elapsed_s")
        if r.get("failed"):
            notes.append(f"{label}the run failed: {r['failed']['reason']}")
        if r.get("aborted"):
            notes.append(f"{label}aborted: {r['aborted']}")
        elif r.get("interrupted"):
            notes.append(f"{label}interrupted: {_measured(measured, planned)}")
        elif (r.get("failed") and isinstance(measured, (int, float))):
            notes.append(f"{label}{_measured(measured, planned)}")
    for p in doc.get("points", []) if kind in ("ramp", "scale") else []:
        if p.get("interrupted"):
            at = f"{p['users']} users" if kind == "ramp" else f"{p['cpus']} CPUs"
            notes.append(f"the point {p.get('curve', p.get('era'))} at {at} was cut short after "
                         f"{p['elapsed_s']:.1f} s")
    return notes


def _measured(measured: Any, planned: float) -> str:
    if isinstance(measured, (int, float)):
        return f"{measured:.1f} s measured of {planned:g} s planned"
    return f"{planned:g} s planned, how long it ran is not recorded"
