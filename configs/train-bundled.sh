#!/usr/bin/env bash
# Reproduces the bundled weights: x4 fine-tuned with the degradation mix from the clean-bicubic x4 that sst 0.3.0-0.4.0
# shipped (itself trained from scratch, 8000 iterations, by the recipe at commit a74a6de), then x3 and x2 fine-tuned
# from the new x4, then export to sst_cli/data/weights/ in fp16. Run from the repository root with ../shared/data
# present (about 1 h: x4 about 45 minutes, x3 and x2 about 8 minutes each).
set -euo pipefail
export PYTHONUNBUFFERED=1
# One thread per process: on a shared 2-core machine, OpenMP threads that wait on a busy core stall every op.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
SST=${SST:-.venv/bin/sst}
mkdir -p runs
[ -f runs/sst-tiny-clean_x4.safetensors ] || git show 50c9bb6:sst_cli/data/weights/sst-tiny_x4.safetensors > runs/sst-tiny-clean_x4.safetensors
for s in 4 3 2; do
  $SST train --config configs/sst-tiny_x$s.yaml --run-dir runs/sst-tiny_x$s --resume
done
.venv/bin/python - <<'PY'
from sst_cli.model.loading import model_from_checkpoint
from sst_cli.model.weights import load_checkpoint, save_checkpoint
import torch
for s in (2, 3, 4):
    ck = load_checkpoint(f"runs/sst-tiny_x{s}/final.safetensors")
    save_checkpoint(f"sst_cli/data/weights/sst-tiny_x{s}.safetensors", model_from_checkpoint(ck), ck.meta, dtype=torch.float16)
    print("exported", s)
PY
