"""``sst train``: configuration, data and the DDP-aware, resumable loop.

- ``config``: one flat dataclass read from YAML, overridable with ``--set key=value``;
- ``data``: random HR crops, LR made on the fly, data order a pure function of the iteration;
- ``run_dir``: a run folder's checkpoints, refusing to mix two runs, stopping on a signal;
- ``loop``: the trainer (EMA, checkpoints, validation through ``sst_cli.evaluation``).

Imports ``sst_cli.model``, ``sst_cli.evaluation``, ``sst_cli.io``; never the CLI.
"""
