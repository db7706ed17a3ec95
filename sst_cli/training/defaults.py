"""What ``sst train`` runs with no config file: plain data (no imports), so ``sst train --help`` can show it.

The bundled model's architecture (``sst-tiny``) at x4, sized to learn something within an hour on a laptop
CPU; configs/sst-tiny_x4.yaml is the longer recipe the bundled weights were trained with.
"""

from __future__ import annotations

from typing import Any

QUICK_START: dict[str, Any] = {
    "name": "sst-tiny", "model": "sst-tiny", "scale": 4, "patch": 32, "batch": 8, "workers": 2,
    "iters": 5000, "lr": 1e-3, "betas": [0.9, 0.99], "warmup": 200, "scheduler": "cosine", "min_lr": 1e-5,
    "ema": 0.999, "export_weights": "model", "val_every": 500, "log_every": 50, "ckpt_every": 250, "keep_last": 2,
}


def summary() -> str:
    """One line for --help: the model, scale, length and batch of the no-config run."""
    q = QUICK_START
    return (f"{q['model']} x{q['scale']}, {q['iters']} iterations of {q['batch']} {q['patch']}-px LR patches, "
            f"AdamW at {q['lr']:g} with {q['scheduler']} decay, EMA {q['ema']}")
