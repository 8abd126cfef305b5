"""The shared-memory model of the kernel's anonymous reverse map (no processes, no CLI).

Import cost is numpy's: nothing heavy is imported here.
"""

from .eras import ERAS, Era, get_era
from .layout import Capacities
from .model import Model, OutOfMemory

__all__ = ["ERAS", "Capacities", "Era", "Model", "OutOfMemory", "get_era"]
