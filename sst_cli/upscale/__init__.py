"""Upscaling: the ``Upscaler`` (model + device + dtype), tiling, TTA, one array, files and batches.

- ``upscaler``: :func:`load_upscaler` turns model/weights/device/dtype/backend into an ``Upscaler``;
- ``tiling``: overlapping, window-aligned tiles blended into bands of finished rows; TTA;
- ``array``: :func:`upscale_array`, one (H, W[, C]) image of any depth, grey, alpha;
- ``batch``: files and folders to output files, skip rules, the batch runner;
- ``video``: one video through the batch: frames upscaled and encoded in resumable segments, then joined.

Imports ``sst_cli.model``, ``sst_cli.io`` and ``sst_cli.runtime``; never the CLI. ``load_upscaler(runtime=...)``
imports ``sst_cli.export.runner`` inside the call, for a graph runtime only.
"""
