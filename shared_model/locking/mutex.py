"""(stub, being written) futex mutex."""
import numpy as np
from numba import njit

from .common import LOCK_STOPPED


@njit(cache=True)
def mutex_lock(words: np.ndarray, w: int, owner_tag: int, stop_w: int) -> int:
    return LOCK_STOPPED

@njit(cache=True)
def mutex_trylock(words: np.ndarray, w: int, owner_tag: int) -> bool:
    return False

@njit(cache=True)
def mutex_unlock(words: np.ndarray, w: int) -> None:
    pass

@njit(cache=True)
def mutex_state(words: np.ndarray, w: int) -> tuple[bool, int]:
    return False, 0
