"""Models for other runtimes.

- ``onnx``: :func:`~sst_cli.export.onnx.export_onnx`, an ONNX graph of any model sst loads, checked in ONNX
  Runtime against PyTorch before it is written (``sst export``).

Imports ``sst_cli.upscale.upscaler`` (the model exactly as ``sst upscale`` loads it), ``sst_cli.model``,
``sst_cli.io`` and ``sst_cli.errors``; never the CLI. ``onnx`` and ``onnxruntime`` (the optional extra
``[onnx]``) are imported only inside the functions that need them.
"""
