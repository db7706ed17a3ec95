"""`sst ARGS` as one torchrun rank, recording what tests ask about into $SST_TEST_RECORD/rank<RANK>.json:

- ``validated``: the names of the validation images this rank evaluated itself;
- ``allreduces``: DDP gradient all-reduces (one per bucket of gradients), counted by a comm hook that
  all-reduces as DDP's default does.

Run by tests as ``python -m torch.distributed.run ... tests/instrumented_sst.py train ...``.
"""

# No `from __future__ import annotations`: DDP checks the comm hook's annotations as objects.
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

from sst_cli.cli import main
from sst_cli.evaluation import runner

record: dict[str, Any] = {"validated": [], "allreduces": 0}
_evaluate_task = runner.evaluate_task
_ddp_init = torch.nn.parallel.DistributedDataParallel.__init__


def evaluate_task(upscaler: Any, task: Any, options: Any, *args: Any, **kwargs: Any) -> Any:
    result = _evaluate_task(upscaler, task, options, *args, **kwargs)
    record["validated"] += [im.name for im in result.images]
    return result


def ddp_init(self: torch.nn.parallel.DistributedDataParallel, *args: Any, **kwargs: Any) -> None:
    _ddp_init(self, *args, **kwargs)

    def hook(state: Any, bucket: torch.distributed.GradBucket) -> torch.futures.Future[torch.Tensor]:
        record["allreduces"] += 1
        return allreduce_hook(None, bucket)  # DDP's default: the average over the default group

    self.register_comm_hook(None, hook)


runner.evaluate_task = evaluate_task
torch.nn.parallel.DistributedDataParallel.__init__ = ddp_init
code = main(sys.argv[1:])
(Path(os.environ["SST_TEST_RECORD"]) / f"rank{os.environ['RANK']}.json").write_text(json.dumps(record))
sys.exit(code)
