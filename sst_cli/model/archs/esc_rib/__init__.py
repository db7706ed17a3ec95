"""ESC-RIB (the authors' fast 64x64-window model): network, config."""

from .config import ESCRIBConfig
from .network import ESCRIB

__all__ = ["ESCRIB", "ESCRIBConfig"]
