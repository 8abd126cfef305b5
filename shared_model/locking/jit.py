"""``cached_njit``: ``numba.njit(cache=True)`` whose cache is invalidated by any change to
the model's sources, that falls back to compiling in memory when no cache directory is
writable, and that leaves out numba's reference counting (NRT) unless asked for it.

Why no NRT by default: numba keeps a reference count on every array a compiled function
receives, and its increments and decrements are atomic read-modify-writes.  Every call
from one compiled function to another with ``words`` as an argument paid two of them
(about 16 ns on this machine), doubling an uncontended ticket lock round trip
(38 -> 14 ns from compiled code, measured).  A function compiled without NRT (numba's
``_nrt=False``) does no counting, which is correct as long as it allocates no arrays:
true of every lock primitive and of a walk over the segment.  A function that must
allocate takes ``@cached_njit(nrt=True)``.

Why not plain ``njit(cache=True)``: numba stamps a cached function with a hash of *its
own* source file only.  A compiled function inlines the compiled functions it calls, so
after an edit to ``mutex.py`` the cached ``lock_acquire`` (in ``lock.py``) would still
load, with the old mutex inside it: stale machine code, silently.  Here every function's
stamp also carries a hash of every ``.py`` file under ``shared_model/`` (read once at
import, about a millisecond), so any edit recompiles everything once.

Where the cache lives is numba's choice: ``NUMBA_CACHE_DIR`` if set and writable, else
``__pycache__`` beside the source, else the user's cache directory; if none is writable
numba refuses to cache at decoration time, and the function is compiled in memory on
every run instead (slower start, never a failure).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit, types

_MODEL_ROOT = Path(__file__).resolve().parent.parent  # shared_model/


def _source_tree_stamp(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


SOURCE_TREE_STAMP = _source_tree_stamp(_MODEL_ROOT)
_njit: Any = njit  # numba's stubs do not list the _nrt flag
# Every dispatcher cached_njit made, in definition order (callees mostly before their
# callers): what shared_model.jit's parallel cold compile shares out among its children.
REGISTRY: list[Any] = []


def cached_njit(fn: Callable[..., Any] | None = None, *, nrt: bool = False,
                inline: bool = False, llvm_inline: bool = False) -> Any:
    """``njit(cache=True)(fn)``, its cache keyed on the whole model's sources too; without
    NRT unless ``nrt=True``.  Use as ``@cached_njit`` or ``@cached_njit(nrt=True)``.

    ``inline=True`` (numba's ``inline="always"``): compiled callers take a copy of the
    body instead of calling it.  For the lock fast paths: a call between two compiled
    functions passes each array as its seven fields on the stack (21 words for
    ``words, g, held``), which cost more than a trylock; the uncontended pair went from
    three such calls deep to none.  Python callers still get a compiled function.

    ``llvm_inline=True``: compiled once, as any function (numba types and lowers it once),
    and marked ``alwaysinline`` for LLVM, which pastes the optimised body into each
    compiled caller instead of a call.  The same saving as ``inline`` at a fraction of its
    compile time: numba's own inlining re-types the body (and all it inlines in turn) at
    every call site (inlining lock_acquire_c and lock_release_c that way took the cold
    compile from 44 to 151 s of CPU)."""
    if fn is None:
        return lambda f: cached_njit(f, nrt=nrt, inline=inline, llvm_inline=llvm_inline)
    how = "always" if inline else "never"
    try:
        dispatcher = _njit(cache=True, _nrt=nrt, inline=how)(fn)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return _njit(_nrt=nrt, inline=how)(fn)
    cache_file = dispatcher._cache._cache_file
    cache_file._source_stamp = (cache_file._source_stamp, SOURCE_TREE_STAMP)
    _compile_unliteral(dispatcher)
    if llvm_inline:
        _always_inline(dispatcher)
    REGISTRY.append(dispatcher)
    return dispatcher


_ANNOTATED = {"int": types.int64, "bool": types.boolean, "float": types.float64}
_INT32_ARRAYS = ("w32",)  # the segment's int32 view; every other array is int64


def declared_signature(dispatcher: Any) -> tuple[Any, ...] | None:
    """The argument types a compiled function is called with, read from its annotations
    and the project's conventions: ``np.ndarray`` is a C-contiguous 1-d int64 array (the
    segment's ``words``, ``g``, ``held``, index arrays) or int32 for ``w32``; ``int`` is
    int64 (a Python int, or any integer from compiled code: see ``_compile_unliteral``);
    ``bool``, ``float`` as numba types them.  None when an annotation says anything else:
    such a function is compiled when first called, as always.  A wrong guess only costs
    a version nobody calls."""
    import inspect

    out = []
    for name, p in inspect.signature(dispatcher.py_func).parameters.items():
        ann = p.annotation
        if ann in ("np.ndarray", np.ndarray):
            out.append(types.Array(types.int32 if name in _INT32_ARRAYS else types.int64, 1, "C"))
        elif isinstance(ann, str) and ann in _ANNOTATED:
            out.append(_ANNOTATED[ann])
        elif isinstance(ann, type) and ann.__name__ in _ANNOTATED:
            out.append(_ANNOTATED[ann.__name__])
        else:
            return None
    return tuple(out)


def _always_inline(dispatcher: Any) -> None:
    """Mark each new version's LLVM function ``alwaysinline`` in the module that compiled
    callers link in (and that numba's cache stores beside the machine code), before it
    is saved."""
    add_overload = dispatcher.add_overload

    def add_overload_inline(cres: Any) -> None:
        library = cres.library
        name = cres.fndesc.llvm_func_name
        for module in (library._final_module, library._shared_module):
            if module is None:
                continue
            try:
                fn = module.get_function(name)
            except NameError:
                continue
            if "alwaysinline" not in str(list(fn.attributes)):
                fn.add_function_attribute("alwaysinline")
        add_overload(cres)

    dispatcher.add_overload = add_overload_inline


def _plain(t: Any) -> Any:
    """The type a compiled caller's argument is compiled for: unliteral, and a signed
    integer narrower than 64 bits widened to int64."""
    t = types.unliteral(t)
    if isinstance(t, types.Integer) and getattr(t, "signed", False) and getattr(t, "bitwidth", 64) < 64:
        return types.int64
    return t


def _compile_unliteral(dispatcher: Any) -> None:
    """Called from compiled code, compile for the arguments' plain types.

    numba types a module-level int constant as ``Literal[int](3)`` and, when a compiled
    caller passes one, compiles the callee for that literal: ``lock_release_c(..., PTL,
    S_PR_ONE, 0, t)`` and ``lock_release_c(..., SLAB, S_FREE, 0, t)`` were two versions,
    each with the whole lock dispatch inlined (12 versions of lock_release_c, 11 of
    lock_acquire_slowpath: a third of the cold compile).  No function of the model needs
    a literal argument, so every call from compiled code asks for the unliteral types;
    a literal still converts to them at the call.  Likewise a narrower signed integer
    (an int32 read from the segment's ``w32`` view) is passed as int64: record indices
    read from int32 fields made a second version of five anon_vma functions."""
    typed = dispatcher.get_call_template

    def get_call_template(args: Any, kws: Any) -> Any:
        return typed(tuple(_plain(a) for a in args), {k: _plain(v) for k, v in kws.items()})

    dispatcher.get_call_template = get_call_template


def cached_cfunc(symbol: str, sig: Any) -> Callable[[Callable[..., Any]], Any]:
    """``numba.cfunc(sig, cache=True)``, its cache keyed on the model's sources as
    ``cached_njit``'s, and registered under ``symbol`` with
    ``llvmlite.binding.add_symbol`` so that compiled code calls it by name
    (``atomics.c_entry_call``).  Compiled (or loaded) at import, so the symbol exists
    before any cached caller's machine code is loaded (an unresolved name would abort the
    process); a child forked after the import inherits it.  With no writable cache it is
    compiled in memory at each import."""
    from llvmlite import binding as llvm
    from numba.core import sigutils
    from numba.core.ccallback import CFunc

    def wrap(fn: Callable[..., Any]) -> Any:
        cf = CFunc(fn, sigutils.normalize_signature(sig), locals={}, options={})
        try:
            cf.enable_caching()
            cache_file = cf._cache._cache_file
            cache_file._source_stamp = (cache_file._source_stamp, SOURCE_TREE_STAMP)
        except RuntimeError:  # no locator: compile in memory
            from numba.core.caching import NullCache

            cf._cache = NullCache()
        cf.compile()
        llvm.add_symbol(symbol, cf.address)
        return cf

    return wrap
