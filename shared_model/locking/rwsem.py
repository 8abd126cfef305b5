"""(stub, being written) rwsem."""
import numpy as np

from .common import LOCK_STOPPED
from .jit import cached_njit


@cached_njit
def down_read(words: np.ndarray, w: int, policy: int, node_w: int, stop_w: int) -> int:
    return LOCK_STOPPED

@cached_njit
def down_write(words: np.ndarray, w: int, policy: int, owner_tag: int, node_w: int, stop_w: int) -> int:
    return LOCK_STOPPED

@cached_njit
def down_read_trylock(words: np.ndarray, w: int, policy: int) -> bool:
    return False

@cached_njit
def down_write_trylock(words: np.ndarray, w: int, policy: int) -> bool:
    return False

@cached_njit
def up_read(words: np.ndarray, w: int, policy: int) -> None:
    pass

@cached_njit
def up_write(words: np.ndarray, w: int, policy: int) -> None:
    pass

@cached_njit
def rwsem_state(words: np.ndarray, w: int) -> tuple[bool, int]:
    return False, 0
