"""The numba internals of locking/numba_hooks.py, each checked for what it must do, so that
a numba release that changes one fails here instead of running stale or slow code.

The cache tests compile a small package of their own (a callee and its caller, in two
files) in a fresh Python process, as a user's second run would, and remove what they
cached; the model's own compiled code is only loaded, never compiled again."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shared_model.locking.numba_hooks import (
    cache_root,
    count_cached_indexes,
    has_cached_index,
    model_cache_dir,
)

REPO = Path(__file__).resolve().parents[3]

_CALLEE = '''from shared_model.locking.cached_compile import cached_njit

TOKEN = "{token}"


@cached_njit
def callee(x: int) -> int:
    return x + 1
'''

_CALLER = '''from shared_model.locking.cached_compile import cached_njit

from .callee import callee


@cached_njit
def caller(x: int) -> int:
    return callee(x) * 10
'''

_RUN = '''import sys
from probe.caller import caller
print(caller(1), sum(caller.stats.cache_misses.values()), caller.stats.cache_path)
'''


def _probe(where: Path, token: str) -> Path:
    pkg = where / "probe"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "callee.py").write_text(_CALLEE.format(token=token))
    (pkg / "caller.py").write_text(_CALLER)
    return where


def _run(where: Path) -> tuple[int, int, Path]:
    """caller(1), how many versions this process compiled, and where it is cached."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(where), str(REPO)])}
    out = subprocess.run([sys.executable, "-c", _RUN], env=env, capture_output=True, text=True,
                         timeout=300, check=True).stdout.split()
    return int(out[0]), int(out[1]), Path(out[2])


def _forget(cache_path: Path) -> None:
    """Remove the probe's key folder (cache_root()/<key>/probe/...) from the cache."""
    key_dir = cache_path
    while key_dir.parent != cache_root() and key_dir.parent != key_dir:
        key_dir = key_dir.parent
    if key_dir.parent == cache_root() and key_dir != model_cache_dir():
        shutil.rmtree(key_dir, ignore_errors=True)


def test_an_edited_callee_recompiles_its_callers(tmp_path: Path) -> None:
    """numba alone stamps caller.py's cache with caller.py's hash: after an edit to
    callee.py it would load the caller with the old callee compiled into it."""
    where = _probe(tmp_path, uuid.uuid4().hex)
    paths = []
    try:
        value, compiled, path = _run(where)
        paths.append(path)
        assert (value, compiled) == (20, 1)
        assert _run(where)[:2] == (20, 0)  # unchanged: loaded from the cache
        callee = where / "probe" / "callee.py"
        callee.write_text(callee.read_text().replace("x + 1", "x + 2"))
        value, compiled, path = _run(where)
        paths.append(path)
        assert (value, compiled) == (30, 1)  # the caller compiled again, with the new callee
    finally:
        for p in paths:
            _forget(p)


def test_two_copies_share_one_cache(tmp_path: Path) -> None:
    """The same sources at two paths (an installed package, a checkout) compile once."""
    token = uuid.uuid4().hex
    first = _probe(tmp_path / "one", token)
    second = _probe(tmp_path / "two", token)
    path = None
    try:
        value, compiled, path = _run(first)
        assert (value, compiled) == (20, 1)
        files = sorted(p.name for p in path.iterdir())
        value, compiled, path_two = _run(second)
        assert (value, compiled, path_two) == (20, 0, path)
        assert sorted(p.name for p in path.iterdir()) == files
    finally:
        if path is not None:
            _forget(path)


def test_cache_lives_under_the_source_key() -> None:
    """Every model function is cached under cache_root()/<hash of the model's sources>."""
    from shared_model.precompile import warm_up
    from shared_model.rmap import rmap_walk_anon

    warm_up()
    assert Path(rmap_walk_anon.stats.cache_path).is_relative_to(model_cache_dir())
    assert model_cache_dir().parent == cache_root()
    assert has_cached_index(rmap_walk_anon)
    assert count_cached_indexes(model_cache_dir()) > 50


def test_each_function_compiles_once() -> None:
    """One version per function in the model's cache: numba's literal and int32
    specialisations turned off (compile_unliteral), the declared signatures right."""
    from shared_model.precompile import warm_up

    warm_up()
    versions: dict[str, int] = {}
    for folder, _dirs, names in os.walk(model_cache_dir()):
        for name in names:
            if name.endswith(".nbc"):
                base = os.path.join(folder, name.rsplit(".", 2)[0])
                versions[base] = versions.get(base, 0) + 1
    assert versions
    assert {b: n for b, n in versions.items() if n > 1} == {}


_KERNELS = '''
import numpy as np
from shared_model.locking.cached_compile import cached_njit

THREE = 3


@cached_njit
def total(a: np.ndarray, n: int) -> int:
    t = 0
    for i in range(n):
        t += a[i]
    return t


@cached_njit
def twice(a: np.ndarray, n: int) -> int:
    return total(a, n) + total(a, n)


@cached_njit
def add(x: int, y: int) -> int:
    return x + y


@cached_njit
def use(a: np.ndarray) -> int:
    return add(a[0], THREE) + add(np.int32(a[1]), 4)
'''


def _kernels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> Any:
    """A module of compiled functions never compiled before, cached in an empty folder."""
    import importlib

    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / f"{name}.py").write_text(_KERNELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return importlib.import_module(name)


def test_no_reference_counting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A compiled function that receives arrays does no NRT counting (``_nrt=False``)."""
    mod = _kernels(tmp_path, monkeypatch, "hooks_nrt")
    assert mod.twice(np.arange(4, dtype=np.int64), 4) == 12
    ir = next(iter(mod.twice.inspect_llvm().values()))
    assert "NRT_incref" not in ir and "NRT_decref" not in ir


def test_a_literal_argument_compiles_no_second_version(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Called from compiled code with a constant and with an int32, the callee compiles
    once, for int64 (compile_unliteral)."""
    mod = _kernels(tmp_path, monkeypatch, "hooks_literal")
    assert mod.use(np.arange(2, dtype=np.int64)) == 8
    assert [str(s) for s in mod.add.signatures] == ["(int64, int64)"]


_COMPILE_ONE = '''import sys
from shared_model.locking.cached_compile import c_entries, declared_signature
from shared_model.memory import dup_mmap_c
from shared_model.anon_vma_chain import anon_vma_fork_c
print(sum(e._cfunc is not None for e in c_entries()))  # the import compiled none
dup_mmap_c.compile(declared_signature(dup_mmap_c))
(cres,) = dup_mmap_c.overloads.values()
print(cres.fndesc.mangled_name)
print(sum(dup_mmap_c.stats.cache_misses.values()), sum(dup_mmap_c.stats.cache_hits.values()))
print(len(anon_vma_fork_c.overloads), sum(anon_vma_fork_c.stats.cache_hits.values()))
print(sum(e._cfunc is not None for e in c_entries()))
'''


def test_cached_code_loads_what_it_calls_first(tmp_path: Path) -> None:
    """dup_mmap_c compiled in one process calls anon_vma_fork_c (and the slab's C entry
    points) by name; a second process that loads dup_mmap_c from the cache before anything
    else loads those first (MCJIT would end the process on a name it cannot resolve), and
    the function has the same LLVM name in both (no per-process counter in it)."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}

    def run() -> list[str]:
        out = subprocess.run([sys.executable, "-c", _COMPILE_ONE], env=env, capture_output=True,
                             text=True, timeout=600, check=True)
        return out.stdout.split("\n")

    first = run()
    assert first[0] == "0"
    assert first[2] == "1 0"  # compiled here
    second = run()
    assert second[0] == "0"
    assert second[1] == first[1] and not re.search(r"B\d+v\d+B", first[1])  # no uid tag
    assert second[2] == "0 1"  # loaded from the cache
    assert second[3] == "1 1"  # its callee loaded first, from the cache
    assert int(second[4]) > 0  # the C entry points it calls, too


def test_a_caller_links_declarations_of_what_it_calls() -> None:
    """The module a compiled caller links of a callee (and the cache keeps beside its
    machine code) defines no model function but those LLVM inlines (alwaysinline); the
    others, the function itself included, are declarations, called by name."""
    from shared_model.anon_vma_chain import anon_vma_fork_c
    from shared_model.locking.cached_compile import declared_signature
    from shared_model.locking.numba_hooks import model_function_of
    from shared_model.locks import lock_acquire_c
    from shared_model.precompile import warm_up

    warm_up()
    (fork,) = anon_vma_fork_c.overloads.values()
    module = fork.library._get_module_for_linking()
    defined = [f for f in module.functions if not f.is_declaration and model_function_of(f.name)]
    assert all("alwaysinline" in str(list(f.attributes)) for f in defined)
    declared = {model_function_of(f.name) for f in module.functions if f.is_declaration}
    assert ("shared_model.anon_vma_chain", "anon_vma_fork_c") in declared
    assert ("shared_model.anon_vma_chain", "anon_vma_clone_c") in declared  # a callee
    lock_acquire_c.compile(declared_signature(lock_acquire_c))  # loaded from the cache
    (acquire,) = lock_acquire_c.overloads.values()  # an inlined helper keeps its body
    kept = acquire.library._get_module_for_linking().get_function(acquire.fndesc.llvm_func_name)
    assert not kept.is_declaration


def test_a_compiled_only_helper_refuses_python_calls() -> None:
    """A helper compiled without numba's CPython wrapper (``python=False``, the default of
    ``llvm_inline=True``) raises CompiledOnly when Python calls it, where numba would call
    a null pointer; compiled callers still inline it, and ``python=True`` keeps the entry."""
    from shared_model.ctx import vma_word
    from shared_model.locking.cached_compile import CompiledOnly, declared_signature
    from shared_model.locks import lock_release_c

    vma_word.compile(declared_signature(vma_word))
    (cres,) = vma_word.overloads.values()
    assert not cres.library.get_pointer_to_function(cres.fndesc.llvm_cpython_wrapper_name)
    g = np.zeros(64, dtype=np.int64)
    with pytest.raises(CompiledOnly, match="shared_model.ctx.vma_word is called from compiled code only"):
        vma_word(g, 1, 0)
    lock_release_c.compile(declared_signature(lock_release_c))
    (kept,) = lock_release_c.overloads.values()
    assert kept.library.get_pointer_to_function(kept.fndesc.llvm_cpython_wrapper_name)
