"""``sst profile``: latency, peak memory and FLOPs across attention backends, models, dtypes and devices.

- ``grid``: one ``ProfileConfig`` per point; FLOP counts and prechecks (no kernel is run);
- ``measure``: runs one configuration in a fresh worker process (``worker``), which probes the backend
  (forward, and backward for training) before measuring; environment facts;
- ``runner``: :func:`profile`, the driver over a grid, the paper's reference figures, CSV rows;
- ``schema``: the ``--json`` result file (keys, version, reading one back);
- ``compare``: result files of several machines merged (``sst profile compare``);
- ``table``: the printed tables as plain cells; ``plot``: the bar chart (matplotlib, optional).

``schema``, ``compare``, ``table`` and ``plot`` import no torch. Nothing here imports the CLI.
"""
