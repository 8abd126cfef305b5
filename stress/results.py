"""Versioned results files: the JSON a run writes and other tools read (names are a contract)."""

from __future__ import annotations

import json
import os
import platform
import sys
from importlib import metadata
from typing import Any

import psutil

SCHEMA_RUN = "rmap-stress/1"
SCHEMA_SCAN = "rmap-stress/1"
SCHEMA_RAMP = "rmap-stress-ramp/1"
SCHEMA_SCALE = "rmap-stress-scale/1"


class ResultsError(ValueError):
    """A results file that cannot be read as the schema a command expects."""


def package_version() -> str:
    """The installed version, or the source tree's (pyproject.toml) when run from it."""
    try:
        return metadata.version("rmap-stress")
    except metadata.PackageNotFoundError:
        pass
    try:
        import tomllib

        path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pyproject.toml")
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


def write_json(path: str, doc: dict[str, Any]) -> None:
    """Write atomically (temp file + rename), so a reader never sees half a file."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump(doc, fh, indent=1, sort_keys=False)
        fh.write("\n")
    os.replace(tmp, path)


def read_json(path: str, schema: str) -> dict[str, Any]:
    try:
        with open(path) as fh:
            doc = json.load(fh)
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such file") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ResultsError(f"{path}: not a results file ({e})") from None
    if not isinstance(doc, dict) or doc.get("schema") != schema:
        got = doc.get("schema") if isinstance(doc, dict) else None
        raise ResultsError(f"{path}: schema {got!r}, expected {schema!r}")
    return doc
