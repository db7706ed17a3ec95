"""Regenerate docs/demo.png: bicubic vs the bundled sst-tiny x4 (and the ground truth when ../shared is here).

    .venv/bin/python docs/make_demo.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from sst_cli.model.bicubic import Bicubic, quantize_uint8
from sst_cli.upscale.upscaler import load_upscaler

ROOT = Path(__file__).resolve().parents[1]
LR = ROOT / "examples" / "butterfly.png"
HR = ROOT.parent / "shared" / "data" / "Set5" / "HR" / "butterfly.png"
CROP = (96, 64, 192, 160)  # a 96x96 region of the x4 output, shown enlarged 2x (nearest)


def panel(img: np.ndarray, label: str) -> Image.Image:
    im = Image.fromarray(img).crop(CROP)
    im = im.resize((im.width * 2, im.height * 2), Image.NEAREST)
    canvas = Image.new("RGB", (im.width, im.height + 22), "white")
    canvas.paste(im, (0, 22))
    ImageDraw.Draw(canvas).text((6, 5), label, fill="black")
    return canvas


def main() -> None:
    lr = torch.from_numpy(np.array(Image.open(LR).convert("RGB"))).permute(2, 0, 1)[None].float() / 255
    up = load_upscaler(scale=4, device="cpu")
    with torch.inference_mode():
        ours = quantize_uint8(up(lr)[0].clamp(0, 1).permute(1, 2, 0))
        bic = quantize_uint8(Bicubic(4)(lr)[0].clamp(0, 1).permute(1, 2, 0))
    panels = [panel(bic, "bicubic x4"), panel(ours, "sst-tiny x4 (bundled)")]
    if HR.is_file():
        panels.append(panel(np.asarray(Image.open(HR).convert("RGB")), "ground truth"))
    w = sum(p.width for p in panels) + 8 * (len(panels) - 1)
    out = Image.new("RGB", (w, panels[0].height), "white")
    x = 0
    for p in panels:
        out.paste(p, (x, 0))
        x += p.width + 8
    out.save(ROOT / "docs" / "demo.png", optimize=True)
    print(f"wrote {ROOT / 'docs' / 'demo.png'} ({out.width}x{out.height})")


if __name__ == "__main__":
    main()
