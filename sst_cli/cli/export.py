"""`sst export`: a model as an ONNX graph, checked in ONNX Runtime against PyTorch before it is written."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import typer

from ..errors import SSTError, UsageError
from . import app
from ._common import Command, console, flag, model_option, scale_option, weights_option

if TYPE_CHECKING:
    from ..export.onnx import OnnxExport


@app.command("export", cls=Command)
def export_cmd(
    output: str = typer.Argument(..., metavar="FILE.onnx", help="The ONNX file to write."),
    model: str | None = model_option(),
    weights: str | None = weights_option(),
    scale: int | None = scale_option(),
    tile: int | None = typer.Option(None, "--tile", "-t", min=1, metavar="N", help="Input height and width in "
                                    "pixels, a multiple of the model's window alignment (default: 64 rounded up "
                                    "to it); with --dynamic, the size checked first."),
    dtype: Literal["fp32", "fp16"] = typer.Option("fp32", "--dtype", metavar="fp32|fp16",
                                                  help="Precision of the graph's input, weights and output."),
    dynamic: bool = flag("--dynamic", help="Any input height and width above half the model's largest window, "
                         "instead of one tile size."),
    opset: int = typer.Option(17, "--opset", min=17, metavar="N", help="ONNX opset (17 or newer)."),
    random_weights: bool = flag("--random-weights", help="Untrained --model (for trying the export only)."),
    seed: int = typer.Option(0, "--seed", metavar="N", min=0, help="Initialises --random-weights and the check inputs."),
    overwrite: bool = flag("--overwrite", help="Replace FILE.onnx if it exists."),
) -> None:
    """sst export FILE.onnx: the model (default: the bundled x4) as an ONNX graph for ONNX Runtime, TensorRT,
    OpenVINO or vs-mlrt. Input 1x3xHxW RGB in [0, 1], output 1x3x(sH)x(sW), not clamped.

    FILE.onnx is written only once the graph, run in ONNX Runtime on random input, matches PyTorch float32.
    Largest difference allowed: 1e-4 for fp32, 1e-2 for fp16; the command prints what it checked.
    """
    from ..export.onnx import export_onnx, require_runtime

    target = Path(output)
    if target.suffix.lower() != ".onnx":
        raise UsageError(f"the output {output} must end in .onnx.")
    if model == "bicubic":
        raise UsageError("--model bicubic is built into sst and has no network to export; pick another --model.")
    if target.exists() and not overwrite:
        raise SSTError(f"{output} exists; pass --overwrite to replace it.")
    require_runtime()  # before any weights are loaded
    from ..upscale.upscaler import load_upscaler

    up = load_upscaler(model, scale, weights, device="cpu", dtype="fp32", random_weights=random_weights, seed=seed)
    done = export_onnx(up, target, tile=tile, dtype=dtype, dynamic=dynamic, opset=opset, seed=seed)
    for line in summary(done):
        console.print(line, highlight=False, soft_wrap=True)


def summary(done: OnnxExport) -> list[str]:
    """What was written and what was checked, one line each."""
    shape = done.input_shape + (f" (H and W from {done.min_side} up)" if done.min_side is not None else "")
    precision = {"fp32": "float32", "fp16": "float16"}[done.dtype]
    lines = [f"{done.name} ({done.source}): ONNX opset {done.opset}, {precision}, input {shape}",
             f"checked in {done.runtime} against PyTorch float32 on random input:"]
    for c in done.checks:
        lines.append(f"  {'x'.join(map(str, c.input_shape))} -> {'x'.join(map(str, c.output_shape))}: "
                     f"max |difference| {c.max_abs_diff:.2g} (allowed {c.tolerance:.0e})")
    lines.append(f"wrote {done.path} ({done.size_bytes / 1e6:.1f} MB)")
    return lines
