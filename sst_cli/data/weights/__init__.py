"""The bundled sst-tiny weights (read with importlib.resources)."""
