"""Evaluation as the field reports it: datasets, metrics, and the runner ``sst eval`` and training share.

- ``datasets``: benchmark names and folder layouts, HR/LR pairs, LR generation (MATLAB bicubic);
- ``metrics``: BasicSR-exact Y-PSNR/SSIM with border crop;
- ``report``: results per image/dataset/scale, JSON and CSV;
- ``runner``: :func:`run_eval` (``sst eval``), :func:`evaluate_task` (one dataset at one scale) and
  :func:`evaluate_model` (an in-memory model through the same code: training validation).

Imports ``sst_cli.upscale``, ``sst_cli.model``, ``sst_cli.io``; never the CLI or training.
"""
