"""ESC-RIB (the authors' fast 64x64-window model): network (``network.py``, loaded on first build),
keywords (``config.py``), state-dict detection (``detect.py``) and cost model (``cost.py``)."""

from .config import ESCRIBConfig

__all__ = ["ESCRIBConfig"]
