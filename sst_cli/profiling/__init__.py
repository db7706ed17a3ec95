"""``sst profile``: latency, peak memory and FLOPs across attention backends, models, dtypes and devices.

- ``grid``: one ``ProfileConfig`` per point; FLOP counts and prechecks (no model is run);
- ``measure``: runs one configuration in a fresh worker process (``worker``); environment facts;
- ``runner``: :func:`profile`, the driver over a grid, the paper's reference figures, CSV rows.

Imports ``sst_cli.model`` and ``sst_cli.runtime``; never the CLI.
"""
