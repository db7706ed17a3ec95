"""One `sst profile` configuration in a fresh process: JSON config on stdin, one result line on stdout.

Run by ``sst_cli.profiling.measure.run_config`` so that each configuration's peak memory is its own.
"""

from __future__ import annotations

import json
import sys

from ..runtime import keep_freed_memory
from .grid import ProfileConfig
from .measure import RESULT_MARK, measure


def main() -> int:
    keep_freed_memory()  # measure what `sst upscale` runs with
    config = ProfileConfig.from_json(sys.stdin.read())
    result = measure(config)
    sys.stdout.write(RESULT_MARK + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
