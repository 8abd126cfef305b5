"""The atomics every lock primitive is built from, in the kernel's vocabulary.

This is the only module that emits LLVM.  Each operation is a numba ``@intrinsic`` on one
element of an int64 (or int32) numpy array, which in this project is a view of the shared
segment, so the atomics are real cross-process atomics on the shared mapping:

===========================  ====================================================  =======
operation                    LLVM                                                  order
===========================  ====================================================  =======
atomic_fetch_add(a, i, v)    atomicrmw add, returns the old value                  seq_cst
atomic_fetch_or(a, i, v)     atomicrmw or, returns the old value                   seq_cst
atomic_fetch_and(a, i, v)    atomicrmw and, returns the old value                  seq_cst
atomic_xchg(a, i, v)         atomicrmw xchg, returns the old value                 seq_cst
cmpxchg(a, i, old, new)      cmpxchg, returns the value found (== old: swapped)    seq_cst
smp_load_acquire(a, i)       load atomic acquire                                   acquire
smp_store_release(a, i, v)   store atomic release                                  release
READ_ONCE(a, i)              load atomic monotonic: never hoisted out of a loop    relaxed
WRITE_ONCE(a, i, v)          store atomic monotonic                                relaxed
WRITE_ONCE_u8(a, i, v)       store atomic monotonic i8 to byte 0 of a[i]          relaxed
WRITE_ONCE_u8_1(a, i, v)     the same to byte 1 (bits 8-15)                        relaxed
WRITE_ONCE_u16(a, i, v)      store atomic monotonic i16 to bits 0-15 of a[i]      relaxed
smp_store_release_u8(a,i,v)  store atomic release i8 to byte 0 of a[i]            release
atomic_xchg_hi32(a, i, v)    atomicrmw xchg i32 on bits 32-63, returns the old     seq_cst
cpu_relax()                  x86 ``pause`` (inline asm, also a compiler barrier)
===========================  ====================================================  =======

and four calls into the C library, for the waits that sleep and for robust-lock checks:

* ``futex_wait(a, i, expected, timeout_ns)``: FUTEX_WAIT on the 32-bit word at the
  element's address (the low half of an int64 word: x86-64 is little-endian), sleeping
  while it still holds ``expected``'s low 32 bits, at most ``timeout_ns``.  Not
  FUTEX_PRIVATE: the memory is shared between processes, so the kernel must key the wait
  on the physical page.  Returns syscall()'s result (0 woken; -1 on EAGAIN, ETIMEDOUT,
  EINTR: every caller simply re-checks its condition).
* ``futex_wake(a, i, n)``: FUTEX_WAKE at most ``n`` sleepers on that word.
* ``clock_ns()``: CLOCK_MONOTONIC in nanoseconds (the vDSO: ~20 ns, no syscall).
* ``pid_alive(pid)``: ``kill(pid, 0)`` did not fail with ESRCH.  A zombie (killed but not
  yet reaped by its parent) still counts as alive: the kernel keeps its pid until then.

The C functions are declared in the compiled module by their plain names (``syscall``,
``clock_gettime``, ``kill``, ``__errno_location``) and resolved through symbols
registered with ``llvmlite.binding.add_symbol`` when this module is imported, which is
what ``numba.types.ExternalFunction`` does; a function that calls them still caches
(``@njit(cache=True)``), where a ctypes function pointer used as a global would not.  The
calls are emitted here rather than through ``ExternalFunction`` because futex and
clock_gettime take a ``struct timespec *``, which is a stack slot (alloca) in the caller's
frame: no allocation on the wait path.  Every process must import this module before it
loads cached code that calls them; ``shared_model.locking`` imports it first, and a child
forked after the import inherits the registration.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

from llvmlite import binding as llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .numba_hooks import c_entry_needed, fixed_arity

SYS_FUTEX = 202  # x86-64
FUTEX_WAIT = 0
FUTEX_WAKE = 1
CLOCK_MONOTONIC = 1
ESRCH = 3

_C_SYMBOLS = ("syscall", "clock_gettime", "kill", "__errno_location")


def _register_c_symbols() -> None:
    """Make the C functions the compiled code calls resolvable by name in the JIT."""
    libc = ctypes.CDLL(None)
    for name in _C_SYMBOLS:
        address = ctypes.cast(getattr(libc, name), ctypes.c_void_p).value
        assert address is not None, name
        llvm.add_symbol(name, address)


_register_c_symbols()
# ``pause`` is inline asm: the JIT needs the native assembler parser, which numba does not
# initialise itself (without it LLVM aborts the process).
llvm.initialize_native_asmparser()

_I32 = ir.IntType(32)
_I64 = ir.IntType(64)


def _intrinsic(typer: Callable[..., Any]) -> Any:
    """numba's ``intrinsic``, typed as what it is to callers: a compiled-only function."""
    return intrinsic(typer)


def _int_array(a: Any) -> bool:
    dtype: Any = getattr(a, "dtype", None)
    return (
        isinstance(a, types.Array)
        and a.ndim == 1
        and isinstance(dtype, types.Integer)
        and getattr(dtype, "bitwidth", 0) in (32, 64)
    )


def _element_ptr(context: Any, builder: Any, aryty: Any, ary: Any, idxty: Any, idx: Any) -> Any:
    """Pointer to ``ary[idx]`` (no bounds check, no wraparound: the index is a word index
    the caller computed)."""
    array = context.make_array(aryty)(context, builder, ary)
    index = context.cast(builder, idx, idxty, types.intp)
    return cgutils.get_item_pointer(context, builder, aryty, array, [index])


def _c_function(builder: Any, name: str, ret: Any, args: list[Any], var_arg: bool = False) -> Any:
    fnty = ir.FunctionType(ret, args, var_arg=var_arg)
    return cgutils.get_or_insert_function(builder.module, fnty, name)


def _rmw(op: str) -> Any:
    def typer(typingctx: Any, a: Any, i: Any, v: Any) -> Any:
        if not (_int_array(a) and isinstance(i, types.Integer) and isinstance(v, types.Integer)):
            return None
        sig = a.dtype(a, i, v)

        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            ary, idx, val = args
            ptr = _element_ptr(context, builder, sig.args[0], ary, sig.args[1], idx)
            val = context.cast(builder, val, sig.args[2], sig.args[0].dtype)
            return builder.atomic_rmw(op, ptr, val, "seq_cst")

        return sig, codegen

    return typer


atomic_fetch_add = _intrinsic(_rmw("add"))
atomic_fetch_add.__doc__ = "a[i] += v atomically; returns the old a[i] (a full barrier)."
atomic_fetch_or = _intrinsic(_rmw("or"))
atomic_fetch_or.__doc__ = "a[i] |= v atomically; returns the old a[i] (a full barrier)."
atomic_fetch_and = _intrinsic(_rmw("and"))
atomic_fetch_and.__doc__ = "a[i] &= v atomically; returns the old a[i] (a full barrier)."
atomic_xchg = _intrinsic(_rmw("xchg"))
atomic_xchg.__doc__ = "a[i] = v atomically; returns the old a[i] (a full barrier)."


@_intrinsic
def cmpxchg(typingctx: Any, a: Any, i: Any, old: Any, new: Any) -> Any:
    """If a[i] == old, a[i] = new; returns the value found (== old means it swapped)."""
    if not (_int_array(a) and isinstance(i, types.Integer)):
        return None
    if not (isinstance(old, types.Integer) and isinstance(new, types.Integer)):
        return None
    sig = a.dtype(a, i, old, new)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ary, idx, expected, desired = args
        aryty = sig.args[0]
        ptr = _element_ptr(context, builder, aryty, ary, sig.args[1], idx)
        expected = context.cast(builder, expected, sig.args[2], aryty.dtype)
        desired = context.cast(builder, desired, sig.args[3], aryty.dtype)
        pair = builder.cmpxchg(ptr, expected, desired, "seq_cst", "seq_cst")
        return builder.extract_value(pair, 0)

    return sig, codegen


def _load(ordering: str) -> Any:
    def typer(typingctx: Any, a: Any, i: Any) -> Any:
        if not (_int_array(a) and isinstance(i, types.Integer)):
            return None
        sig = a.dtype(a, i)

        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            ary, idx = args
            ptr = _element_ptr(context, builder, sig.args[0], ary, sig.args[1], idx)
            return builder.load_atomic(ptr, ordering, sig.args[0].dtype.bitwidth // 8)

        return sig, codegen

    return typer


def _store(ordering: str) -> Any:
    def typer(typingctx: Any, a: Any, i: Any, v: Any) -> Any:
        if not (_int_array(a) and isinstance(i, types.Integer) and isinstance(v, types.Integer)):
            return None
        sig = types.void(a, i, v)

        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            ary, idx, val = args
            aryty = sig.args[0]
            ptr = _element_ptr(context, builder, aryty, ary, sig.args[1], idx)
            val = context.cast(builder, val, sig.args[2], aryty.dtype)
            builder.store_atomic(val, ptr, ordering, aryty.dtype.bitwidth // 8)
            return context.get_dummy_value()

        return sig, codegen

    return typer


smp_load_acquire = _intrinsic(_load("acquire"))
smp_load_acquire.__doc__ = "a[i], ordered before every later load and store of this CPU."
READ_ONCE = _intrinsic(_load("monotonic"))
READ_ONCE.__doc__ = "a[i], read from memory each time (a spin loop re-reads it)."
smp_store_release = _intrinsic(_store("release"))
smp_store_release.__doc__ = "a[i] = v, ordered after every earlier load and store of this CPU."
WRITE_ONCE = _intrinsic(_store("monotonic"))
WRITE_ONCE.__doc__ = "a[i] = v, written to memory once, untorn."


# -- parts of a word: the kernel's byte and halfword views of one lock word ------------------
# x86-64 is little-endian: byte 0 of an int64 word is its bits 0-7, the upper half (byte
# offset 4) its bits 32-63.  A store to a part of a word that others cmpxchg as a whole is
# what qspinlock does (``lock->locked``, ``lock->locked_pending``, ``lock->tail``): x86
# keeps such mixed-size accesses to one cache line coherent.


def _part_ptr(context: Any, builder: Any, sig: Any, ary: Any, idx: Any, offset: int,
              bits: int) -> Any:
    ptr = _element_ptr(context, builder, sig.args[0], ary, sig.args[1], idx)
    byte_ptr = builder.bitcast(ptr, ir.IntType(8).as_pointer())
    part = builder.gep(byte_ptr, [ir.Constant(_I64, offset)])
    return builder.bitcast(part, ir.IntType(bits).as_pointer())


def _store_part(ordering: str, offset: int, bits: int) -> Any:
    def typer(typingctx: Any, a: Any, i: Any, v: Any) -> Any:
        if not (_int_array(a) and a.dtype.bitwidth == 64 and isinstance(i, types.Integer)
                and isinstance(v, types.Integer)):
            return None
        sig = types.void(a, i, v)

        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            ary, idx, val = args
            ptr = _part_ptr(context, builder, sig, ary, idx, offset, bits)
            val = builder.trunc(context.cast(builder, val, sig.args[2], types.int64),
                                ir.IntType(bits))
            builder.store_atomic(val, ptr, ordering, bits // 8)
            return context.get_dummy_value()

        return sig, codegen

    return typer


def _xchg_part(offset: int, bits: int) -> Any:
    def typer(typingctx: Any, a: Any, i: Any, v: Any) -> Any:
        if not (_int_array(a) and a.dtype.bitwidth == 64 and isinstance(i, types.Integer)
                and isinstance(v, types.Integer)):
            return None
        sig = types.int64(a, i, v)

        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            ary, idx, val = args
            ptr = _part_ptr(context, builder, sig, ary, idx, offset, bits)
            val = builder.trunc(context.cast(builder, val, sig.args[2], types.int64),
                                ir.IntType(bits))
            old = builder.atomic_rmw("xchg", ptr, val, "seq_cst")
            return builder.zext(old, _I64)

        return sig, codegen

    return typer


WRITE_ONCE_u8 = _intrinsic(_store_part("monotonic", 0, 8))
WRITE_ONCE_u8.__doc__ = "byte 0 of a[i] (bits 0-7) = v: one byte store (x86 ``movb``)."
WRITE_ONCE_u8_1 = _intrinsic(_store_part("monotonic", 1, 8))
WRITE_ONCE_u8_1.__doc__ = "byte 1 of a[i] (bits 8-15) = v: one byte store."
WRITE_ONCE_u16 = _intrinsic(_store_part("monotonic", 0, 16))
WRITE_ONCE_u16.__doc__ = "bits 0-15 of a[i] = v: one halfword store (x86 ``movw``)."
smp_store_release_u8 = _intrinsic(_store_part("release", 0, 8))
smp_store_release_u8.__doc__ = ("byte 0 of a[i] = v, ordered after every earlier load and "
                                "store of this CPU: on x86 a plain ``movb``.")
atomic_xchg_hi32 = _intrinsic(_xchg_part(4, 32))
atomic_xchg_hi32.__doc__ = ("bits 32-63 of a[i] = v atomically (``xchg`` on the upper half); "
                            "returns the old upper half (a full barrier).")


@_intrinsic
def cpu_relax(typingctx: Any) -> Any:
    """x86 ``pause``: tells the core this is a spin loop (and the compiler: memory changed)."""
    sig = types.void()

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        builder.asm(ir.FunctionType(ir.VoidType(), []), "pause", "~{memory}", [], True)
        return context.get_dummy_value()

    return sig, codegen


def _timespec(builder: Any, ns: Any) -> Any:
    """A stack ``struct timespec`` holding ``ns`` nanoseconds."""
    ts = cgutils.alloca_once(builder, ir.LiteralStructType([_I64, _I64]))
    billion = ir.Constant(_I64, 1_000_000_000)
    builder.store(builder.sdiv(ns, billion), cgutils.gep_inbounds(builder, ts, 0, 0))
    builder.store(builder.srem(ns, billion), cgutils.gep_inbounds(builder, ts, 0, 1))
    return ts


def _futex_ptr(context: Any, builder: Any, sig: Any, ary: Any, idx: Any) -> Any:
    ptr = _element_ptr(context, builder, sig.args[0], ary, sig.args[1], idx)
    return builder.bitcast(ptr, _I32.as_pointer())


def _u32(builder: Any, value: Any) -> Any:
    """The low 32 bits of an i64, zero-extended: every syscall argument is passed as a full
    register (syscall() is variadic), and the kernel reads futex values as u32."""
    return builder.zext(builder.trunc(value, _I32), _I64)


def _syscall(builder: Any, args: list[Any]) -> Any:
    fn = _c_function(builder, "syscall", _I64, [_I64], var_arg=True)
    return builder.call(fn, args)


@_intrinsic
def futex_wait(typingctx: Any, a: Any, i: Any, expected: Any, timeout_ns: Any) -> Any:
    """Sleep while the low 32 bits of a[i] equal ``expected``'s, at most ``timeout_ns``."""
    if not (_int_array(a) and isinstance(i, types.Integer)):
        return None
    if not (isinstance(expected, types.Integer) and isinstance(timeout_ns, types.Integer)):
        return None
    sig = types.int64(a, i, expected, timeout_ns)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ary, idx, val, timeout = args
        uaddr = _futex_ptr(context, builder, sig, ary, idx)
        val32 = _u32(builder, context.cast(builder, val, sig.args[2], types.int64))
        ts = _timespec(builder, context.cast(builder, timeout, sig.args[3], types.int64))
        null = ir.Constant(_I64, 0).inttoptr(_I32.as_pointer())
        return _syscall(builder, [
            ir.Constant(_I64, SYS_FUTEX), uaddr, ir.Constant(_I64, FUTEX_WAIT), val32, ts,
            null, ir.Constant(_I64, 0),
        ])

    return sig, codegen


@_intrinsic
def futex_wake(typingctx: Any, a: Any, i: Any, n: Any) -> Any:
    """Wake at most ``n`` processes sleeping on the low 32 bits of a[i]; returns how many."""
    if not (_int_array(a) and isinstance(i, types.Integer) and isinstance(n, types.Integer)):
        return None
    sig = types.int64(a, i, n)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ary, idx, count = args
        uaddr = _futex_ptr(context, builder, sig, ary, idx)
        count32 = _u32(builder, context.cast(builder, count, sig.args[2], types.int64))
        null = ir.Constant(_I64, 0).inttoptr(_I32.as_pointer())
        return _syscall(builder, [
            ir.Constant(_I64, SYS_FUTEX), uaddr, ir.Constant(_I64, FUTEX_WAKE), count32, null,
            null, ir.Constant(_I64, 0),
        ])

    return sig, codegen


@_intrinsic
def clock_ns(typingctx: Any) -> Any:
    """CLOCK_MONOTONIC, in nanoseconds."""
    sig = types.int64()

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ts = cgutils.alloca_once(builder, ir.LiteralStructType([_I64, _I64]))
        fn = _c_function(builder, "clock_gettime", _I32, [_I32, ts.type])
        builder.call(fn, [ir.Constant(_I32, CLOCK_MONOTONIC), ts])
        sec = builder.load(cgutils.gep_inbounds(builder, ts, 0, 0))
        nsec = builder.load(cgutils.gep_inbounds(builder, ts, 0, 1))
        return builder.add(builder.mul(sec, ir.Constant(_I64, 1_000_000_000)), nsec)

    return sig, codegen


@_intrinsic
def pid_alive(typingctx: Any, pid: Any) -> Any:
    """False only when no process ``pid`` exists (``kill(pid, 0)`` fails with ESRCH)."""
    if not isinstance(pid, types.Integer):
        return None
    sig = types.boolean(pid)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        (p,) = args
        p32 = builder.trunc(context.cast(builder, p, sig.args[0], types.int64), _I32)
        kill = _c_function(builder, "kill", _I32, [_I32, _I32])
        rc = builder.call(kill, [p32, ir.Constant(_I32, 0)])
        errno_location = _c_function(builder, "__errno_location", _I32.as_pointer(), [])
        ok = builder.icmp_signed("==", rc, ir.Constant(_I32, 0))
        with builder.if_else(ok) as (then, otherwise):
            with then:
                bb_then = builder.basic_block
            with otherwise:
                err = builder.load(builder.call(errno_location, []))
                not_esrch = builder.icmp_signed("!=", err, ir.Constant(_I32, ESRCH))
                bb_else = builder.basic_block
        alive = builder.phi(ir.IntType(1))
        alive.add_incoming(ok, bb_then)
        alive.add_incoming(not_esrch, bb_else)
        return alive

    return sig, codegen


@_intrinsic
def rdtsc(typingctx: Any) -> Any:
    """x86 ``rdtsc``: the time-stamp counter, in cycles (inline asm; not serialising, as the
    kernel's sched_clock/lockstat reads it: a few cycles of skid do not matter to a hold
    time).  Kept from being hoisted or merged by the asm's side effect."""
    sig = types.int64()

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        pair = builder.asm(ir.FunctionType(ir.LiteralStructType([_I32, _I32]), []), "rdtsc",
                           "={eax},={edx}", [], True)
        lo = builder.zext(builder.extract_value(pair, 0), _I64)
        hi = builder.zext(builder.extract_value(pair, 1), _I64)
        return builder.or_(builder.shl(hi, ir.Constant(_I64, 32)), lo)

    return sig, codegen


@_intrinsic
def mul_u64_u32_shr(typingctx: Any, a: Any, mult: Any, shift: Any) -> Any:
    """(a * mult) >> shift with a 128-bit product, as the kernel's ``mul_u64_u32_shr`` that
    cyc2ns uses: no overflow for any cycle count (a and mult are taken as unsigned)."""
    if not all(isinstance(x, types.Integer) for x in (a, mult, shift)):
        return None
    sig = types.int64(a, mult, shift)
    i128 = ir.IntType(128)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        x, m, s = (builder.zext(context.cast(builder, v, t, types.int64), i128)
                   for v, t in zip(args, sig.args))
        return builder.trunc(builder.lshr(builder.mul(x, m), s), _I64)

    return sig, codegen


@_intrinsic
def bit_length(typingctx: Any, v: Any) -> Any:
    """Python's ``int.bit_length`` of a non-negative int64: 64 - ``lzcnt`` (one instruction)."""
    if not isinstance(v, types.Integer):
        return None
    sig = types.int64(v)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        x = context.cast(builder, args[0], sig.args[0], types.int64)
        lz = builder.ctlz(x, ir.Constant(ir.IntType(1), 0))
        return builder.sub(ir.Constant(_I64, 64), lz)

    return sig, codegen


def c_entry_call(symbol: str, n_arrays: int, n_ints: int) -> Any:
    """An intrinsic ``f(a_1 .. a_n_arrays, i_1 .. i_n_ints) -> int64`` that calls the C
    function ``symbol`` (a ``locking.cached_compile.cached_cfunc``, registered by that name with
    ``llvmlite.binding.add_symbol``), passing each int64 or int32 array as (data pointer,
    length) and each integer as int64.  The callee is compiled once, in its own module; a call
    through a name links nothing into the caller, where a call to a compiled function
    links the callee's whole IR into every caller's module to be optimised again."""

    def typer(typingctx: Any, *args: Any) -> Any:
        if len(args) != n_arrays + n_ints:
            return None
        if not all(_int_array(a) for a in args[:n_arrays]):
            return None
        if not all(isinstance(i, types.Integer) for i in args[n_arrays:]):
            return None
        c_entry_needed(symbol)  # compiled (or loaded) before the caller's code needs it
        sig = types.int64(*args)

        def codegen(context: Any, builder: Any, sig: Any, llargs: Any) -> Any:
            flat = []
            for aty, ary in zip(sig.args[:n_arrays], llargs[:n_arrays]):
                a = context.make_array(aty)(context, builder, ary)
                flat.append(builder.bitcast(a.data, ir.IntType(aty.dtype.bitwidth).as_pointer()))
                flat.append(a.nitems)
            for ity, v in zip(sig.args[n_arrays:], llargs[n_arrays:]):
                flat.append(context.cast(builder, v, ity, types.int64))
            fn = _c_function(builder, symbol, _I64, [x.type for x in flat])
            return builder.call(fn, flat)

        return sig, codegen

    call = _intrinsic(fixed_arity(n_arrays + n_ints, typer, f"call_{symbol}"))
    call.c_entry_symbol = symbol  # what a cold compile orders its work by (precompile)
    return call
