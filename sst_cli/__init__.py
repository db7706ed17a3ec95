"""sst: the SST super-resolution transformer as a command-line tool and a library."""

from .model import SST, build_model
from .upscale import upscale_array
from .zoo import VARIANTS, create_model

__version__ = "0.1.0"
__all__ = ["SST", "build_model", "create_model", "upscale_array", "VARIANTS", "__version__"]
