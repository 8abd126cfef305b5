"""``cached_njit`` and ``cached_cfunc``: numba's ``njit(cache=True)`` and ``cfunc(cache=True)``
with a cache keyed by the model's sources, without numba's reference counting (NRT)
unless asked for it.  The numba internals this relies on are in numba_hooks.py, with a
table of what each relies on and the test that catches a change.

Why no NRT by default: numba keeps a reference count on every array a compiled function
receives, and its increments and decrements are atomic read-modify-writes.  Every call
from one compiled function to another with ``words`` as an argument paid two of them
(about 16 ns on this machine), doubling an uncontended ticket lock round trip
(38 -> 14 ns from compiled code, measured).  A function compiled without NRT (numba's
``_nrt=False``) does no counting, which is correct as long as it allocates no arrays:
true of every lock primitive and of a walk over the segment.  A function that must
allocate takes ``@cached_njit(nrt=True)``.

Why not plain ``njit(cache=True)``: numba stamps a cached function with a hash of *its
own* source file only, and files it under a folder named after the file's path.  A
compiled function inlines the compiled functions it calls, so after an edit to
``mutex.py`` the cached ``lock_acquire`` (in ``lock.py``) would still load, with the old
mutex inside it: stale machine code, silently; and an installed copy of the package and a
checkout would each compile everything once.  Here every function is cached under
``<cache root>/<hash of every .py file of shared_model/ and of the function's own package
or script>/`` (numba_hooks.SourceTreeLocator), with that hash as its stamp: any edit
recompiles everything once, and identical sources anywhere on the machine share one
cache.  The root is ``$NUMBA_CACHE_DIR``, else ``~/.cache/rmap-stress``; when it is not
writable, functions are compiled in memory at every start instead (slower, never a
failure).  Old hash folders are not removed: deleting the root is always safe.

Why each function once: numba would link a callee's whole module into every compiled
caller, to be optimised and turned into machine code again there (half the IR of a cold
compile was such copies).  Here a compiled caller calls the model's functions by name
(numba_hooks.install_calls_by_name), except the small helpers LLVM pastes into it
(``llvm_inline=True``); no function gets numba's C wrapper (nothing takes a compiled
function's address but the C entry points, compiled with their own), and those helpers
get no CPython wrapper either unless Python calls them (``python=True``).  See
docs/compiled.md for what each saved.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numba import cfunc, njit, types

from . import numba_hooks
from .numba_hooks import (
    cache_usable,
    claim,
    compile_unliteral,
    mark_always_inline,
    no_nrt_options,
    refuse_python_calls,
    wrapper_options,
)

numba_hooks.install_source_tree_locator()


def _compile_callee(module: str, name: str) -> None:
    """Load (or compile) the model function ``module.name`` for its declared types: cached
    machine code about to be loaded calls it by name (numba_hooks.install_calls_by_name)."""
    import importlib

    compile_declared(getattr(importlib.import_module(module), name))


def compile_declared(dispatcher: Any) -> None:
    """Compile (or load from the cache) ``dispatcher`` for its declared argument types,
    unless done already or it declares none."""
    sig = declared_signature(dispatcher)
    if sig is not None and sig not in dispatcher.overloads:
        dispatcher.compile(sig)


numba_hooks.install_calls_by_name(_compile_callee)
_njit: Any = njit  # numba's stubs do not list the _nrt flag
# Every dispatcher cached_njit made, in definition order (callees mostly before their
# callers): what shared_model.precompile's parallel cold compile shares out among its
# children.
REGISTRY: list[Any] = []
# The dispatchers of REGISTRY pasted into each compiled caller (``llvm_inline=True`` or
# ``inline=True``); each is compiled on its own too.
INLINED: set[Any] = set()


class CompiledOnly(TypeError):
    """A compiled-only function (``cached_njit(python=False)``) was called from Python."""


def cached_njit(fn: Callable[..., Any] | None = None, *, nrt: bool = False,
                llvm_inline: bool = False, inline: bool = False, cache: bool = True,
                python: bool | None = None) -> Any:
    """``njit(cache=True)(fn)``, its cache keyed on the whole model's sources too; without
    NRT unless ``nrt=True``.  Use as ``@cached_njit`` or ``@cached_njit(nrt=True)``.

    ``llvm_inline=True``: compiled once, as any function (numba types and lowers it once),
    and marked ``alwaysinline`` for LLVM, which pastes the optimised body into each
    compiled caller instead of a call.  For the lock fast paths and the small helpers
    (a record's word, a tree node's field): a call between two compiled functions passes
    each array as its seven fields on the stack (21 words for ``words, g, held``), which
    cost more than a trylock.  Python callers still get a compiled function.  Not numba's
    own ``inline="always"``, which saves the same calls but re-types the callee's
    body (and all it inlines in turn) at every call site: inlining lock_acquire_c and
    lock_release_c that way took the cold compile from 44 to 151 s of CPU, and with 125
    helpers inlined that way a serial cold warm-up took 77.5 s of CPU, against 45 s with
    all but two of them inlined by LLVM (the 2-core machine, load average 2-3).

    ``inline=True``: numba's own ``inline="always"``, for the two request points
    (lock_request.py) only: inlined by LLVM instead, a 2.6.33 walk's visited entry cost
    about 95 ns with lockstat against 60 ns (the same machine, back to back; without
    lockstat 41 against 38 ns), with every other helper inlined by LLVM either way.

    ``python=False`` (the default with ``llvm_inline=True``): called from compiled code
    only: numba builds no CPython wrapper for it (a third of a small helper's IR: a cold
    compile of the model took 10% less CPU without them), and a call from Python raises
    ``CompiledOnly``.  ``python=True`` keeps the wrapper (any function Python calls).

    ``cache=False``: compiled in memory at each import, never written to the cache, and
    not one of the model's functions (not in REGISTRY, so warm-up skips it): for the
    tests' own kernels, so that the test suite after ``rmap-stress demo`` writes no cache
    file."""
    if fn is None:
        return lambda f: cached_njit(f, nrt=nrt, llvm_inline=llvm_inline, inline=inline,
                                     cache=cache, python=python)
    if python is None:
        python = not llvm_inline
    how = "always" if inline else "never"
    options = {} if nrt else no_nrt_options()
    options.update(wrapper_options(python))
    model = cache
    cache = cache and cache_usable()
    if cache:
        claim(fn)
    try:
        dispatcher = _njit(cache=cache, inline=how, **options)(fn)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        dispatcher = _njit(inline=how, **options)(fn)
    compile_unliteral(dispatcher)
    if not python:
        refuse_python_calls(dispatcher, CompiledOnly)
    if llvm_inline:
        mark_always_inline(dispatcher)
    if model:
        REGISTRY.append(dispatcher)
        if llvm_inline or inline:
            INLINED.add(dispatcher)
    return dispatcher


_ANNOTATED = {"int": types.int64, "bool": types.boolean, "float": types.float64}
# Arrays whose elements are not int64, by parameter name: the segment's int32 view, and the
# check's "reached" marks (a bool array).  Every other array is int64.
_ARRAY_DTYPES = {"w32": types.int32, "seen": types.boolean}


def declared_signature(dispatcher: Any) -> tuple[Any, ...] | None:
    """The argument types a compiled function is called with, read from its annotations
    and the project's conventions: ``np.ndarray`` is a C-contiguous 1-d int64 array (the
    segment's ``words``, ``g``, ``held``, index arrays), int32 for ``w32``, bool for
    ``seen``; ``int`` is
    int64 (a Python int, or any integer from compiled code: see
    ``numba_hooks.compile_unliteral``);
    ``bool``, ``float`` as numba types them.  None when an annotation says anything else:
    such a function is compiled when first called, as always.  A wrong guess only costs
    a version nobody calls."""
    import inspect

    out: list[Any] = []
    for name, p in inspect.signature(dispatcher.py_func).parameters.items():
        ann = p.annotation
        if ann in ("np.ndarray", np.ndarray):
            out.append(types.Array(_ARRAY_DTYPES.get(name, types.int64), 1, "C"))
        elif isinstance(ann, str) and ann in _ANNOTATED:
            out.append(_ANNOTATED[ann])
        elif isinstance(ann, type) and ann.__name__ in _ANNOTATED:
            out.append(_ANNOTATED[ann.__name__])
        else:
            return None
    return tuple(out)


# The argument types of a C entry point's signature: an int64 and a pointer to one (an
# array is passed as its data pointer and its length: ``atomics.c_entry_call``).
I64 = types.int64
I64P = types.CPointer(types.int64)


class CEntry:
    """A C entry point: ``numba.cfunc(sig, cache=True)`` of ``fn``, compiled (or loaded
    from the source-keyed cache) when first needed, and then registered under ``symbol``
    with ``llvmlite.binding.add_symbol`` so that compiled code calls it by name
    (``atomics.c_entry_call``).  "Needed" is: a compiled caller is typed, cached machine
    code calling it is about to be loaded (numba_hooks.c_entry_needed), or ``cfunc`` is
    read.  With no usable cache it is compiled in memory."""

    def __init__(self, symbol: str, sig: Any, fn: Callable[..., Any]) -> None:
        self.symbol, self.sig, self.py_func = symbol, sig, fn
        self._cfunc: Any = None

    @property
    def cfunc(self) -> Any:
        """The compiled C function (numba's ``CFunc``), compiled or loaded on first use."""
        if self._cfunc is None:
            from llvmlite import binding as llvm

            cache = cache_usable()
            if cache:
                claim(self.py_func)
            # Often first needed while numba types a caller: compiled with numba's default
            # flags, not the caller's (no NRT) that a nested compile would inherit.
            with numba_hooks.default_flags():
                try:
                    cf = cfunc(self.sig, cache=cache)(self.py_func)
                except RuntimeError:  # no locator: compile in memory
                    cf = cfunc(self.sig)(self.py_func)
            llvm.add_symbol(self.symbol, cf.address)
            self._cfunc = cf
        return self._cfunc

    def __repr__(self) -> str:
        state = "compiled" if self._cfunc is not None else "not compiled yet"
        return f"<C entry point {self.symbol} ({self.py_func.__qualname__}), {state}>"


def c_entries() -> list[CEntry]:
    """Every C entry point, in definition order (numba_hooks.C_ENTRIES, by symbol): what
    warm-up puts in the cache beside REGISTRY."""
    return list(numba_hooks.C_ENTRIES.values())


def cached_cfunc(symbol: str, sig: Any) -> Callable[[Callable[..., Any]], CEntry]:
    """``fn`` as a C entry point named ``symbol`` (CEntry): compiled when first needed, in
    the source-keyed cache as ``cached_njit``'s functions."""

    def wrap(fn: Callable[..., Any]) -> CEntry:
        entry = CEntry(symbol, sig, fn)
        numba_hooks.C_ENTRIES[symbol] = entry
        return entry

    return wrap
