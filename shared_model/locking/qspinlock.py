"""(stub, being written) MCS-queued spinlock."""
import numpy as np
from numba import njit

from .common import LOCK_STOPPED


@njit(cache=True)
def queued_spin_lock(words: np.ndarray, w: int, node_w: int, stop_w: int) -> int:
    return LOCK_STOPPED

@njit(cache=True)
def queued_spin_trylock(words: np.ndarray, w: int) -> bool:
    return False

@njit(cache=True)
def queued_spin_unlock(words: np.ndarray, w: int) -> None:
    pass

@njit(cache=True)
def queued_spin_state(words: np.ndarray, w: int) -> tuple[bool, int]:
    return False, 0
