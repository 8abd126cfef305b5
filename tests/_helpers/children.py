"""A forked child running a body on a model as CPU ``CHILD_CPU``, and a bounded wait for
it: a child still running after ``JOIN_S`` is killed and reaped, and the test fails naming
it (a lost hand-off must fail with a message, never hang the suite)."""

from __future__ import annotations

import os
import signal
import time
import traceback
from collections.abc import Callable, Iterator

import pytest

from shared_model.model import Model

CHILD_CPU = 0  # the builder (the test process) is the last CPU; the child takes CPU 0
JOIN_S = 30.0  # a child that has not exited by then is stuck: killed, and the test fails

Body = Callable[[Model, int, int], None]


def waitpid_within(pid: int, timeout: float, what: str = "") -> int:
    """os.waitpid(pid, 0) bounded by ``timeout``: the wait status, or (the child killed and
    reaped) an AssertionError naming the child, its state when killed, and the wait."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > deadline:
            state = _proc_state(pid)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"child {pid}{f' ({what})' if what else ''} still running after "
                                 f"{timeout} s, state {state} (killed): it never got the lock it "
                                 "waited for, or never let it go")
        time.sleep(0.001)


def _proc_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
        with open(f"/proc/{pid}/wchan") as fh:
            wchan = fh.read().strip()
    except (OSError, IndexError):
        return "unknown"
    return f"{state} in {wchan}" if wchan and wchan != "0" else state


class Child:
    """A forked process running ``body(model_for_cpu, write_fd, read_fd)`` (``cpu``: CHILD_CPU
    unless given), then
    ``os._exit``: 0 if the body returned, 1 if it raised (and the model's stop word set,
    so that a parent stuck spinning gives up).  A body that returns holding a lock dies
    holding it (how the robust-lock tests kill an owner).  The two pipes let a body say
    "ready" (``wait_ready``) and wait for "go" (``tell``)."""

    def __init__(self, m: Model, body: Body, cpu: int = CHILD_CPU) -> None:
        self.to_parent_r, self.to_parent_w = os.pipe()
        self.to_child_r, self.to_child_w = os.pipe()
        self.joined = False
        self.name = getattr(body, "__name__", "body")
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                os.close(self.to_parent_r)
                os.close(self.to_child_w)
                cm = Model(m.seg, m.era, cpu, lock_kind=m.lock_kind)
                body(cm, self.to_parent_w, self.to_child_r)
                code = 0
            except BaseException:  # noqa: BLE001 - any failure: exit code 1, and unblock
                traceback.print_exc()  # into the test's captured stderr: why the child failed
                m.header["stop"][0] = 2
            finally:
                os._exit(code)
        os.close(self.to_parent_w)
        os.close(self.to_child_r)

    def wait_ready(self) -> None:
        assert os.read(self.to_parent_r, 1) == b"r", f"child {self.pid} ({self.name}) died before ready"

    def tell(self) -> None:
        os.write(self.to_child_w, b"g")

    def join(self) -> int:
        """The child's exit code; a child still running after JOIN_S is killed and the test
        fails saying so."""
        try:
            status = waitpid_within(self.pid, JOIN_S, self.name)
        finally:
            self.joined = True  # reaped either way: reap() must not signal the pid again
            for fd in (self.to_parent_r, self.to_child_w):
                os.close(fd)
        return os.waitstatus_to_exitcode(status)

    def reap(self) -> None:
        """Kill and reap a child the test did not join (it failed half way)."""
        if not self.joined:
            os.kill(self.pid, signal.SIGKILL)
            self.join()


Spawn = Callable[..., Child]  # (model, body[, cpu]) -> Child


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """Start a Child; any the test leaves unjoined is killed and reaped at teardown."""
    children: list[Child] = []

    def start(m: Model, body: Body, cpu: int = CHILD_CPU) -> Child:
        children.append(Child(m, body, cpu))
        return children[-1]

    yield start
    for c in children:
        c.reap()
