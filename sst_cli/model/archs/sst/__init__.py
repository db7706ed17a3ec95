"""SST: network (``network.py``, loaded on first build), keywords (``config.py``), state-dict detection
(``detect.py``) and cost model (``cost.py``)."""

from .config import SSTConfig

__all__ = ["SSTConfig"]
