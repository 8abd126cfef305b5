"""The README and the manual under docs/ stay true to the tree and to the CLI: every relative
link (and its #anchor) resolves, every ``rmap-stress ...`` command shown in a fenced block
names a real subcommand with options its parser accepts (and, where it has no placeholders,
parses outright), the option reference is what ``--help`` prints today, and no document
speaks of the project's development history."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from stress.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    out: set[str] = set()
    text = FENCE.sub("", path.read_text())
    for line in text.splitlines():
        m = re.match(r"^#{1,6}\s+(.*)$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        base, n = slug, 1
        while slug in out:
            slug = f"{base}-{n}"
            n += 1
        out.add(slug)
    return out


def _links() -> list[tuple[Path, str]]:
    found = []
    for doc in DOCS:
        text = FENCE.sub("", doc.read_text())
        for m in LINK.finditer(text):
            target = m.group(1) or m.group(2)
            if not re.match(r"^[a-z]+:", target):
                found.append((doc, target))
    return found


@pytest.mark.parametrize(("doc", "target"), _links(),
                         ids=[f"{d.relative_to(ROOT)}->{t}" for d, t in _links()])
def test_relative_links_resolve(doc: Path, target: str) -> None:
    path, _, anchor = target.partition("#")
    dest = (doc.parent / path).resolve() if path else doc
    assert dest.exists(), f"{doc.relative_to(ROOT)}: {target} does not exist"
    if anchor and dest.suffix == ".md":
        assert anchor in _anchors(dest), f"{doc.relative_to(ROOT)}: no heading #{anchor} in {path}"


def _commands() -> list[tuple[Path, str]]:
    """Each ``rmap-stress`` command line of a fenced block (continuations joined, a ``$``
    prompt and a trailing comment dropped)."""
    found = []
    for doc in DOCS:
        for block in FENCE.findall(doc.read_text()):
            lines = block.splitlines()
            i = 0
            while i < len(lines):
                line = lines[i].strip()
                while line.endswith("\\") and i + 1 < len(lines):
                    i += 1
                    line = line[:-1] + " " + lines[i].strip()
                i += 1
                line = re.sub(r"^\$\s+", "", line)
                line = re.sub(r"\s+#\s.*$", "", line)
                if line.startswith("rmap-stress "):
                    found.append((doc, line))
    return found


def _option_strings(parser: object) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}  # type: ignore[attr-defined]


@pytest.mark.parametrize(("doc", "line"), _commands(),
                         ids=[f"{d.relative_to(ROOT)}:{c[:60]}" for d, c in _commands()])
def test_commands_shown_parse(doc: Path, line: str) -> None:
    parser = build_parser()
    subparsers = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    words = line.split()
    command = words[1].split("|")
    assert all(c in subparsers for c in command), f"{doc.name}: unknown command in {line!r}"
    for name in command:
        known = _option_strings(subparsers[name])
        options = set(re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", " ".join(words[2:])))
        unknown = {o for o in options if o not in known and o.split("=")[0] not in known}
        if name == "scale":  # scale takes every run option too
            unknown -= _option_strings(subparsers["run"])
        assert not unknown, f"{doc.name}: rmap-stress {name} does not take {sorted(unknown)}"
    placeholder = re.search(r"[\[\]|]|\.\.\.|\b[A-Z][A-Z0-9_.]*\b(?!\.)", line)
    if not placeholder:
        parser.parse_args(shlex.split(line)[1:])


def test_the_option_reference_is_current() -> None:
    """docs/cli-reference.md is what scripts/gen_cli_reference.py writes from --help."""
    script = ROOT / "scripts" / "gen_cli_reference.py"
    out = subprocess.run([sys.executable, str(script), "--check"],
                         capture_output=True, text=True, cwd=ROOT, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_no_development_history() -> None:
    for doc in DOCS:
        text = doc.read_text()
        for pattern in (r"issue[ s#]*[0-9]+", r"this session"):
            hits = re.findall(f".{{0,40}}{pattern}.{{0,20}}", text, re.IGNORECASE)
            assert not hits, f"{doc.relative_to(ROOT)}: {hits[:3]}"


def test_readme_is_a_front_page() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    first = FENCE.search(readme)
    assert first is not None
    assert first.group(1).splitlines() == ['pip install . && rmap-stress demo',
                                           'pip install ".[test]" && python -m pytest -q']
