"""Evaluation as the field reports it: datasets, metrics, and the runner ``sst eval`` and training share.

- ``datasets``: benchmark names and folder layouts, HR/LR pairs, LR generation (MATLAB bicubic);
- ``catalog``: the benchmark sets sst knows (plain data): names, licences, pinned Hub sources and their hashes;
- ``fetch``: a benchmark downloaded once from the Hub, verified against the catalog, kept in the sst cache;
- ``registry``: every metric ``--metrics`` takes (plain data): reference or not, direction, digits, who computes it;
- ``metrics``: BasicSR-exact Y-PSNR/SSIM with border crop, and ``measure`` (any registry metric of one image);
- ``niqe``: NIQE as BasicSR's ``calculate_niqe`` (numpy; the pristine model is package data);
- ``iqa``: LPIPS, DISTS, MUSIQ, MANIQA, CLIPIQA through pyiqa (the optional [iqa] extra), weights used only when
  cached unless ``SST_IQA_DOWNLOAD=1``;
- ``report``: results per image/dataset/scale, JSON and CSV;
- ``runner``: :func:`run_eval` (``sst eval``), :func:`evaluate_task` (one dataset at one scale) and
  :func:`evaluate_model` (an in-memory model through the same code: training validation).

Imports ``sst_cli.upscale``, ``sst_cli.model``, ``sst_cli.io``; never the CLI or training.
"""
