"""Models for other runtimes.

- ``onnx``: :func:`~sst_cli.export.onnx.export_onnx`, an ONNX graph of any model sst loads, checked in ONNX
  Runtime against PyTorch before it is written (``sst export``);
- ``runner``: ``sst upscale --runtime onnxruntime|openvino``: an ``Upscaler`` whose forward runs fixed-size
  graphs, one per tile size (:func:`~sst_cli.export.runner.attach`, ``CPU_DEFAULT``);
- ``cache``: those graphs exported, checked in their runtime and cached once (``~/.cache/sst/graphs``);
- ``sessions``: ONNX Runtime and OpenVINO sessions on the CPU (threads, optimisation, float32).

Imports ``sst_cli.upscale.upscaler`` and ``manifest`` (the model exactly as ``sst upscale`` loads it, and its
weights fingerprint), ``sst_cli.model``, ``sst_cli.io`` and ``sst_cli.errors``; never the CLI.
``load_upscaler(runtime=...)`` imports ``runner`` inside the call (the one way back into this package).
``onnx``, ``onnxruntime`` and ``openvino`` (the optional extras ``[onnx]``, ``[openvino]``) are imported only
inside the functions that need them.
"""
