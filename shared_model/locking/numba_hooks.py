"""Every line of the project that depends on how a particular numba release works inside.

numba and llvmlite are pinned to the minor release these were checked against
(pyproject.toml: ``numba>=0.68,<0.69``, ``llvmlite>=0.50,<0.51``).  Moving the pin means
reading this table, then running the tests it names (``tests/shared_model/locking/
test_numba_hooks.py`` holds most of them)::

  ==========================  ===================================  =========================
  hook (function below)       relies on (numba 0.68 internals)     test that catches a change
  ==========================  ===================================  =========================
  no_nrt_options              njit's undocumented ``_nrt=False``   test_no_reference_counting
  wrapper_options,            njit's undocumented ``no_cfunc_      test_a_compiled_only_
  refuse_python_calls         wrapper``/``no_cpython_wrapper``;    helper_refuses_python
                              numba's Dispatcher a Python class
                              whose C ``__call__`` a subclass
                              overrides
  mark_always_inline          ``Dispatcher.add_overload``,         test_the_lock_pair_is_
                              ``cres.library._final_module`` and   inlined_by_llvm
                              ``._shared_module``,                 (test_compile.py)
                              ``cres.fndesc.llvm_func_name``
  compile_unliteral           ``Dispatcher.get_call_template``     test_each_function_
                              (how calls from compiled code are    compiles_once, test_a_
                              typed)                               literal_argument_...
  install_source_tree_locator ``caching.CacheImpl._locator_        test_an_edited_callee_
                              classes`` and the locator protocol   recompiles_its_callers,
                              (from_function, ensure_cache_path,   test_two_copies_share_
                              get_cache_path, get_source_stamp,    one_cache, test_cache_
                              get_disambiguator; ``_py_file``,     lives_under_the_source_key
                              read by check_cachable's warning)
  has_cached_index,           cache file names: one index          test_cache_lives_under_
  count_cached_indexes        ``<module>.<qualname>-<line>.pyXY    the_source_key, test_each_
                              .nbi`` per function, data files      function_compiles_once
                              ``<same>.<n>.nbc`` per version
  fixed_arity                 ``numba.extending.intrinsic`` reads  test_allocation_goes_
                              its typer's parameters by name       through_the_cpu_cache
                              (``*args`` does not lower)           (test_slab_mapcount.py)
  install_calls_by_name       ``CPUCodeLibrary._get_module_for_    test_a_caller_links_
                              linking`` (what callers link) and    declarations_of_what_it_
                              ``._unserialize`` (its "object"      calls, test_cached_code_
                              branch, copied), ``BaseContext.      loads_what_it_calls_first
                              mangler`` and the ``B<n>v<uid>`` tag
                              of numba's LLVM names, the JIT
                              engine's ``_defined_symbols``, the
                              text form of llvmlite's IR
  default_flags               ``targetconfig.ConfigStack``: a      test_the_lock_pair_is_
                              compile inside another inherits its  inlined_by_llvm
                              unset flags (``CPUTargetOptions.     (test_compile.py)
                              finalize``)
  ==========================  ===================================  =========================

Why no public way, for each: NRT cannot be turned off per function by any documented
option; numba gives no access to LLVM function attributes; nothing stops numba from
compiling a callee once per literal constant or integer width its compiled callers pass;
the documented cache settings (``NUMBA_CACHE_DIR``) file a function under a folder named
after the *path* of its source and stamp it with *its own file's* hash only, so two
copies of the package compile twice and an edited callee leaves its callers' cached code
stale (``NUMBA_CACHE_LOCATOR_CLASSES`` takes a locator too, but as an environment
setting it is global and is reset when numba reloads its configuration); numba has
no query for "is this function in the cache"; numba links a callee's whole module into
every compiled caller, with no option to call a compiled function by name instead, and
names each version with a per-process counter; and a C entry point first needed while a
caller is typed has no public way to be compiled outside that caller's flags.
fixed_arity builds a typer of ``n`` named parameters with ``exec``:
``types.ExternalFunction`` with each array passed as ``a.ctypes.data, a.size`` does the
same job through public API and works (measured on the
shared 2-core machine, one run: 2.09 against 2.13 ns per call from compiled code), but it
needs one more compiled wrapper per C entry point to keep the call sites as they are
(a probe entry point: 0.30-0.34 s cold against 0.14-0.18 s), so the stub stays.

Public numba and llvmlite API the project also uses (documented, so not listed as hooks,
but a pin move should still run ``tests/shared_model/locking``): ``njit(cache=True,
inline=...)``, ``cfunc(sig, cache=True)`` and ``.address``, ``Dispatcher.compile``,
``.overloads``, ``.py_func``, ``.stats``, ``.inspect_llvm``; ``numba.extending.intrinsic``
with llvmlite's IR builder and ``context.make_array`` / ``context.cast`` / ``cgutils``
(atomics.py, tested by test_atomics.py); ``llvmlite.binding.add_symbol`` and
``initialize_native_asmparser`` (atomics.py, cached_compile.cached_cfunc).

What replaced earlier private hooks: the per-function source stamp that was rewritten to
carry a hash of every model source is now the stamp of the locator below (a public
protocol method, installed through one private list); the cold-compile check reads the
locator's own directory instead of ``FunctionCache._cache_path``; cfuncs go through
``numba.cfunc(cache=True)`` instead of ``numba.core.ccallback.CFunc``.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import tempfile
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

MODEL_ROOT = Path(__file__).resolve().parent.parent  # shared_model/
CACHE_ENV = "NUMBA_CACHE_DIR"


# ---------------------------------------------------------------- compile options


def no_nrt_options() -> dict[str, Any]:
    """njit's options for a function that does no reference counting of the arrays it
    receives (numba's private ``_nrt`` flag).  See cached_compile: 38 -> 14 ns for an
    uncontended ticket lock round trip called from compiled code."""
    return {"_nrt": False}


def wrapper_options(python: bool) -> dict[str, Any]:
    """njit's options that leave out the wrappers numba builds around every compiled
    function (its undocumented ``no_cfunc_wrapper``, ``no_cpython_wrapper``): the
    C-callable one always (nothing takes a compiled function's address but the C entry
    points, which have their own), the CPython one unless ``python`` (a function called
    from compiled code only: the wrapper is a third of a small helper's IR)."""
    options = {"no_cfunc_wrapper": True}
    if not python:
        options["no_cpython_wrapper"] = True
    return options


def refuse_python_calls(dispatcher: Any, error: type[Exception]) -> None:
    """Make ``dispatcher`` (compiled without a CPython wrapper) raise ``error`` when Python
    calls it, where numba would call a null pointer: its class becomes a subclass whose
    ``__call__`` replaces the C-level call of numba's Dispatcher."""
    base = type(dispatcher)

    def __call__(self: Any, *args: Any, **kws: Any) -> Any:
        name = f"{self.py_func.__module__}.{self.py_func.__qualname__}"
        raise error(f"{name} is called from compiled code only (no Python entry: "
                    f"cached_njit(python=False)); call it from a compiled function, or "
                    f"declare it python=True")

    dispatcher.__class__ = type(base.__name__, (base,), {"__call__": __call__,
                                                         "__qualname__": base.__qualname__})


def mark_always_inline(dispatcher: Any) -> None:
    """Mark each new version's LLVM function ``alwaysinline`` in the modules that compiled
    callers link in (and that the cache stores beside the machine code), before numba
    saves it."""
    add_overload = dispatcher.add_overload

    def add_overload_inline(cres: Any) -> None:
        library = cres.library
        library.__dict__.pop("_declarations_module", None)  # made before the mark: again
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


def compile_unliteral(dispatcher: Any) -> None:
    """Called from compiled code, compile for the arguments' plain types: unliteral, and a
    signed integer narrower than 64 bits widened to int64.

    numba types a module-level int constant as ``Literal[int](3)`` and, when a compiled
    caller passes one, compiles the callee for that literal: ``lock_release_c(..., PTL,
    S_PR_ONE, 0, t)`` and ``lock_release_c(..., SLAB, S_FREE, 0, t)`` were two versions,
    each with the whole lock dispatch inlined (12 versions of lock_release_c, 11 of
    lock_acquire_slowpath: a third of the cold compile).  No function of the model needs
    a literal argument, so every call from compiled code asks for the unliteral types;
    a literal still converts to them at the call.  Likewise a narrower signed integer
    (an int32 read from the segment's ``w32`` view) is passed as int64: record indices
    read from int32 fields made a second version of five anon_vma functions."""
    from numba import types

    def plain_type(t: Any) -> Any:
        t = types.unliteral(t)
        if (isinstance(t, types.Integer) and getattr(t, "signed", False)
                and getattr(t, "bitwidth", 64) < 64):
            return types.int64
        return t

    typed = dispatcher.get_call_template

    def get_call_template(args: Any, kws: Any) -> Any:
        return typed(tuple(plain_type(a) for a in args),
                     {k: plain_type(v) for k, v in kws.items()})

    dispatcher.get_call_template = get_call_template


def fixed_arity(n: int, typer: Callable[..., Any], name: str) -> Any:
    """``typer`` as a function of exactly ``n`` named arguments, for
    ``numba.extending.intrinsic`` (it lowers an intrinsic's arguments by name: ``*args``
    does not lower)."""
    params = ", ".join(f"a{i}" for i in range(n))
    scope: dict[str, Any] = {"typer": typer}
    exec(f"def stub(tc, {params}):\n    return typer(tc, {params})\n", scope)  # noqa: S102
    stub = scope["stub"]
    stub.__name__ = name
    return stub


# ---------------------------------------------------------------- calls by name

_MODEL_PREFIX = "shared_model."
# How the model's functions' LLVM names start (itanium: _ZN, then "shared_model" with its
# length), their CPython wrappers' and their C wrappers'.
_MODEL_SYMBOLS = ("_ZN12shared_model", "_ZN7cpython12shared_model", "cfunc._ZN12shared_model")
_DEFINE = re.compile(r'^define (?:(?:linkonce_odr|weak_odr|linkonce|weak|external|dso_local|'
                     r'hidden|protected) )*(.*?@"?([^"(]+)"?\(.*\))(?: [a-z_]+)*(?: #\d+)?'
                     r'(?: [a-z_]+(?:\([^)]*\))?)* \{$')


def model_function_of(symbol: str) -> tuple[str, str] | None:
    """(module, name) of a model function's LLVM name (``_ZN12shared_model4rmap14rmap_walk_
    anonB...``: ``("shared_model.rmap", "rmap_walk_anon")``) or of its CPython or C wrapper's,
    or None for any other name."""
    symbol = symbol.removeprefix("cfunc.")
    if symbol.startswith("_ZN7cpython"):
        symbol = "_ZN" + symbol[len("_ZN7cpython"):]
    if not symbol.startswith("_ZN12shared_model"):
        return None
    parts, i = [], 3
    while i < len(symbol) and symbol[i].isdigit():
        j = i
        while symbol[j].isdigit():
            j += 1
        n = int(symbol[i:j])
        parts.append(symbol[j:j + n])
        i = j + n
    if len(parts) < 2:
        return None
    return ".".join(parts[:-1]), parts[-1]


def _stable_mangler(self: Any, name: str, types: Any, *, abi_tags: Any = (), uid: Any = None) -> str:
    """numba's mangler, without the per-process counter (``uid``) for the model's own
    functions: the same function has the same LLVM name in every process, so machine code
    compiled in one process can call it by name in another."""
    from numba.core import funcdesc

    if name.startswith(_MODEL_PREFIX):
        uid = None
    return funcdesc.default_mangler(name, types, abi_tags=abi_tags, uid=uid)


_DECLARE = re.compile(r'^declare .*?@"?([^"(]+)"?\(')
_SYMBOL_LINE = re.compile(r'^(declare|define)[^@]*@"?([^"(]+)', re.MULTILINE)
_GLOBAL_LINE = re.compile(r'^@(?:"([^"]+)"|([-\w.$]+)) = (.*)$', re.MULTILINE)


def _declarations_only(module: Any, own: str) -> Any:
    """``module`` (what numba links into every compiled caller) with the model's functions
    that LLVM does not inline (no ``alwaysinline``) turned into declarations: a caller calls
    them by name instead of linking, optimising and emitting its own copy.  It declares the
    model's functions that the library's machine code calls (the cache loads them before
    it: see install_calls_by_name) and the library's own function ``own``, no others.
    The module itself when nothing is to strip or the text does not parse back (then
    copies, as numba does)."""
    from llvmlite import binding as llvm

    strip = {f.name for f in module.functions
             if not f.is_declaration and f.name.startswith(_MODEL_SYMBOLS)
             and "alwaysinline" not in str(list(f.attributes))}
    if not strip:
        return module
    text = str(module)
    body = "\n".join(line for line in text.splitlines() if not line.startswith("declare "))
    out, skipping = [], False
    for line in text.splitlines():
        if skipping:
            skipping = line != "}"
            continue
        m = _DEFINE.match(line) if line.startswith("define ") else None
        if m is not None and m.group(2) in strip:
            out.append("declare " + m.group(1))
            skipping = True
            continue
        out.append(line)
    kept = []
    for line in out:
        m = _DECLARE.match(line) if line.startswith("declare ") else None
        if m is not None and m.group(1).startswith(_MODEL_SYMBOLS):
            where = model_function_of(m.group(1))
            if (where is None or where[1] != own) and f"@{m.group(1)}" not in body \
                    and f'@"{m.group(1)}"' not in body:
                continue
        kept.append(line)
    out = kept
    try:
        stripped = llvm.parse_assembly("\n".join(out))
        stripped.verify()
    except RuntimeError:
        return module
    return stripped


# Every C entry point (cached_compile.CEntry), by symbol, in definition order: reading its
# ``cfunc`` compiles (or loads) it and registers its symbol (c_entry_needed).
C_ENTRIES: dict[str, Any] = {}


def c_entry_needed(symbol: str) -> None:
    """Compiled code about to be compiled or loaded calls the C entry point ``symbol``:
    compile or load it now (once per process), so that the name resolves."""
    entry = C_ENTRIES.get(symbol)
    if entry is not None:
        entry.cfunc  # noqa: B018 - compiles or loads it


def default_flags() -> Any:
    """A context in which numba compiles with its default flags: a compile started while
    numba compiles another function (a C entry point first needed while a caller is
    typed) inherits that function's unset flags otherwise (no NRT, forced inlining)
    through numba's ``ConfigStack``."""
    from numba.core.compiler import Flags
    from numba.core.targetconfig import ConfigStack

    flags: Any = Flags()  # what CPUTargetOptions.finalize sets with nothing to inherit from
    flags.nrt = True
    flags.error_model = "python"
    return ConfigStack().enter(flags)


def install_calls_by_name(find: Callable[[str, str], Any]) -> None:
    """Compiled callers call the model's functions by name (once per process).

    numba links a callee's whole module (and everything the callee links in turn) into
    every compiled caller, where LLVM optimises it and emits machine code for it again:
    half the IR of a cold compile was such copies (``anon_vma_free_c`` in 13 callers,
    ``lock_acquire_no_abort_c`` in 55).  Here the module a caller links holds only
    declarations of the model's functions LLVM does not inline (``_declarations_only``),
    each function keeps one LLVM name in every process (``_stable_mangler``), and before
    numba loads machine code from the cache, the functions it calls by name are loaded
    (or compiled) first (``find(module, name)`` gives the dispatcher, which is compiled
    for its declared signature), as are the C entry points it calls (``C_ENTRIES``), since
    MCJIT ends the process on a name it cannot resolve."""
    from llvmlite import binding as llvm
    from numba.core import base, codegen

    library: Any = codegen.CPUCodeLibrary
    if getattr(library, "_calls_by_name", False):
        return
    context: Any = base.BaseContext
    context.mangler = _stable_mangler
    for_linking = library._get_module_for_linking

    def get_module_for_linking(self: Any) -> Any:
        stripped = getattr(self, "_declarations_module", None)
        if stripped is None:
            stripped = _declarations_only(for_linking(self), self.name)
            self._declarations_module = stripped
        return stripped

    unserialize = library._unserialize.__func__

    def unserialize_after_callees(cls: Any, cg: Any, state: Any) -> Any:
        name, kind, data = state
        if kind != "object":
            return unserialize(cls, cg, state)
        engine = cg._engine
        object_code, shared_bitcode = data
        shared = llvm.parse_bitcode(shared_bitcode)
        # The module's names read from its text: a quarter of the time of asking llvmlite
        # for each function (every llvmlite call also runs numba's event hooks).
        text = str(shared)
        symbols = _SYMBOL_LINE.findall(text)
        defined = {n for kind, n in symbols if kind == "define"}
        defined.update(n1 or n2 for n1, n2, rest in _GLOBAL_LINE.findall(text)
                       if not rest.startswith("external "))
        own = []
        for kind, fname in symbols:
            if kind != "declare" or engine.is_symbol_defined(fname):
                continue
            if fname in C_ENTRIES:
                c_entry_needed(fname)
                continue
            where = model_function_of(fname)
            if where is None:  # not the model's
                continue
            if where[1] == name:  # its own function or wrapper, declared only in what
                own.append(fname)  # callers link
                continue
            if not fname.startswith("_ZN12shared_model"):
                continue  # another function's wrapper: nothing calls it
            find(*where)
            if not engine.is_symbol_defined(fname):
                raise RuntimeError(f"cached machine code of {name} calls {where[0]}."
                                   f"{where[1]} for types it is not compiled for")
        # numba's own "object" branch of _unserialize, with the module parsed above
        library = cg.create_library(name)
        library.enable_object_caching()
        library._set_compiled_object(object_code)
        library._shared_module = shared
        library._finalize_final_module()
        # numba's engine._load_defined_symbols(shared), from the pass above, and the
        # library's own functions, which the module only declares
        engine._defined_symbols.update(defined, own)
        return library

    library._get_module_for_linking = get_module_for_linking
    library._unserialize = classmethod(unserialize_after_callees)
    library._calls_by_name = True


# ---------------------------------------------------------------- the source-keyed cache

_CLAIMED: weakref.WeakSet[Any] = weakref.WeakSet()  # functions the locator caches
_TREE_HASHES: dict[tuple[Path, bool], str] = {}


def cache_root() -> Path:
    """Where every compiled function is cached: ``$NUMBA_CACHE_DIR`` when set, else
    ``$XDG_CACHE_HOME/rmap-stress`` (``~/.cache/rmap-stress``).  One per user and machine:
    an installed package and a checkout with the same sources share it."""
    env = os.environ.get(CACHE_ENV, "")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME", "") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rmap-stress"


def _tree_hash(root: Path) -> str:
    """sha256 of every ``.py`` file under ``root`` (or of ``root`` itself, a plain module),
    names and contents; read once per process (a few milliseconds for shared_model)."""
    key = (root, root.is_dir())
    if key not in _TREE_HASHES:
        digest = hashlib.sha256()
        files = sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts) \
            if root.is_dir() else [root]
        for path in files:
            digest.update(str(path.relative_to(root.parent)).encode())
            digest.update(b"\0")
            digest.update(path.read_bytes())
        _TREE_HASHES[key] = digest.hexdigest()
    return _TREE_HASHES[key]


def _source_root(py_func: Any, py_file: str) -> Path:
    """The sources a compiled function depends on besides the model: its top-level
    package's folder, or its own file when it is a plain module (a script)."""
    top = py_func.__module__.split(".")[0]
    module = sys.modules.get(top)
    paths = list(getattr(module, "__path__", []) or [])
    if paths:
        return Path(paths[0]).resolve()
    return Path(py_file).resolve()


def source_key(py_func: Any, py_file: str) -> tuple[str, Path]:
    """(the hash of every source the function's machine code may hold, its folder under
    that hash).  A compiled function inlines what it calls, from any file of the model,
    so the key covers all of shared_model/, plus the function's own package or script."""
    root = _source_root(py_func, py_file)
    digest = hashlib.sha256(_tree_hash(MODEL_ROOT).encode())
    if root != MODEL_ROOT:
        digest.update(_tree_hash(root).encode())
    if root.is_dir():
        sub = Path(root.name) / Path(py_file).resolve().parent.relative_to(root)
    else:
        sub = Path(root.stem)
    return digest.hexdigest()[:24], sub


def model_cache_dir() -> Path:
    """The folder holding the model's own compiled functions (for the cold-start check
    and the progress count): ``cache_root()/<key>``."""
    digest = hashlib.sha256(_tree_hash(MODEL_ROOT).encode())
    return cache_root() / digest.hexdigest()[:24]


class SourceTreeLocator:
    """numba's cache locator protocol, for the functions ``claim`` marked: the cache
    folder is named after ``source_key`` (not the install path), and the stamp numba checks
    before loading is that key (not one file's hash), so an edit anywhere in the model
    recompiles every caller, and two copies of the same sources share one cache."""

    def __init__(self, py_func: Any, py_file: str) -> None:
        key, sub = source_key(py_func, py_file)
        self._py_file = py_file  # numba's message for a function it cannot cache reads it
        self._key = key
        self._lineno = py_func.__code__.co_firstlineno
        self._cache_path = str(cache_root() / key / sub)

    def ensure_cache_path(self) -> None:
        os.makedirs(self._cache_path, exist_ok=True)
        tempfile.TemporaryFile(dir=self._cache_path).close()

    def get_cache_path(self) -> str:
        return self._cache_path

    def get_source_stamp(self) -> str:
        return self._key

    def get_disambiguator(self) -> str:
        return str(self._lineno)

    @classmethod
    def from_function(cls, py_func: Any, py_file: str) -> SourceTreeLocator | None:
        if py_func not in _CLAIMED or not os.path.exists(py_file):
            return None
        locator = cls(py_func, py_file)
        try:
            locator.ensure_cache_path()
        except OSError:
            return None
        return locator


def install_source_tree_locator() -> None:
    """Put SourceTreeLocator first in the list numba asks for a cache folder (once).
    It claims only the functions ``claim`` marked; every other function keeps numba's
    own locators.  ``NUMBA_CACHE_LOCATOR_CLASSES``, when a user sets it, replaces the list
    and so this locator too (cached_compile then caches nothing, see cache_usable)."""
    from numba.core import caching

    classes = caching.CacheImpl._locator_classes
    if SourceTreeLocator not in classes:
        classes.insert(0, SourceTreeLocator)


def claim(py_func: Any) -> None:
    """The next cache made for ``py_func`` is SourceTreeLocator's."""
    _CLAIMED.add(py_func)


def cache_usable() -> bool:
    """The source-keyed cache can be used: its root is writable and no user override of
    the locator list bypasses it.  Otherwise compiled functions are compiled in memory at
    every start (slower, never stale)."""
    if os.environ.get("NUMBA_CACHE_LOCATOR_CLASSES", ""):
        return False
    root = cache_root()
    try:
        os.makedirs(root, exist_ok=True)
        tempfile.TemporaryFile(dir=root).close()
    except OSError:
        return False
    return True


def has_cached_index(dispatcher: Any) -> bool:
    """numba's cache holds an index file for ``dispatcher`` in its folder."""
    py = dispatcher.py_func
    prefix = f"{py.__module__.rsplit('.', 1)[-1]}.{py.__qualname__}-"
    try:
        names = os.listdir(dispatcher.stats.cache_path)
    except (OSError, TypeError, AttributeError):
        return False
    return any(n.startswith(prefix) and n.endswith(".nbi") for n in names)


def count_cached_indexes(folder: Path) -> int:
    """Index files (one per cached function) under ``folder``."""
    n = 0
    for _dir, _subdirs, names in os.walk(folder):
        n += sum(1 for name in names if name.endswith(".nbi"))
    return n
