"""SSTReal (the authors' real-world x4 model, official type ``EDMUNet``): network (``network.py``, loaded on
first build), keywords (``config.py``), state-dict detection (``detect.py``), cost model (``cost.py``) and the
one-step sampling that turns it into an image-to-image network (``sampling.py``)."""

from .config import SSTRealConfig

__all__ = ["SSTRealConfig"]
