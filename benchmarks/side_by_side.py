"""A side-by-side picture: one photo, one crop, several models at x4, each panel labelled, in one PNG.

    .venv/bin/python benchmarks/side_by_side.py                  # a BSD200 photo (../shared), bicubic + sst-tiny
    .venv/bin/python benchmarks/side_by_side.py photo.jpg --crop 120,40,64,64 \\
        --model bicubic --model sst-l=SSTLarge_DF2K_X4.pth --model sst-real=SSTReal_X4.pth --seed 0 --out cmp.png

The photo is taken as given: it is the low-resolution input, as a user's photo is (nothing is downscaled, so there
is no ground truth to show). The crop is ``--crop x,y,w,h`` in input pixels, or by default the ``--crop-size``
square with the most gradient energy (the most texture: where the models differ). The first panel is the input
crop enlarged by nearest neighbour; then one panel per ``--model NAME[=WEIGHTS]``, upscaled x4 through the public
API (:func:`sst_cli.load_upscaler`, called on a numpy array), shown at 1:1. Only a region around the crop is
upscaled: the crop plus ``--margin`` input pixels of context, its start on the model's window grid, and for a
model whose output depends on the position (sst-real's seeded noise) placed where it lies in the photo
(:func:`sst_cli.model.placement.region_at`), so each panel is the whole photo's result there, within the tiling
tolerance (tests/test_side_by_side.py checks it); a network that sees the whole image (esc-rib) gets the whole
photo. Without ``--model``: bicubic, the bundled model, and sst-l and
sst-real where their official files are here already (the search folders or the Hugging Face cache; nothing is
downloaded for a default column). A weights file that does not exist is refused in one sentence.

Written atomically: the PNG (``--out``; a .jpg name writes JPEG quality 90) and beside it a JSON with the settings
that re-make it (the photo, crop, each model with its weights' file name and sha256 prefix, seed and
guidance, dtype, device) and where each panel lies in the picture.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from sst_cli.io.files import file_sha256  # no torch: the model modules are imported where they are used

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PHOTO = ROOT.parent / "shared" / "data" / "BSD200" / "HR" / "12003.png"  # the starfish: texture on moss
SCALE = 4
CROP_SIZE = 96  # input pixels of the default crop (a panel of 384x384 at x4)
MIN_MARGIN = 32  # input pixels of context around the crop (the tiler's default overlap); at least one window
GAP = 8  # pixels between panels
FONT_SIZE = 13


@dataclass(frozen=True)
class Column:
    """One model column: ``name`` for :func:`sst_cli.load_upscaler` and its weights file (None: bicubic, the
    bundled model, or an official file sst finds or downloads by name)."""

    name: str
    weights: Path | None = None


# -------------------------------------------------------------------------------------------- columns
def parse_column(text: str) -> Column:
    """``NAME`` or ``NAME=WEIGHTS``; a weights file that is not here (as a path, or by its bare name in sst's
    search folders) is refused in one sentence, before any model is loaded."""
    from sst_cli.model import hub, registry

    name, _, weights = text.partition("=")
    name = name.strip()
    if name != "bicubic":
        try:
            name = registry.get_variant(name).name
        except KeyError as exc:
            raise SystemExit(f"--model {text}: {exc.args[0]}.") from None
    if not weights:
        return Column(name)
    if name == "bicubic":
        raise SystemExit(f"--model {text}: bicubic is built in and takes no weights; write --model bicubic.")
    path = Path(weights).expanduser()
    if path.is_file():
        return Column(name, path)
    found = hub.find_local(path.name) if len(path.parts) == 1 else None
    if found is None:
        raise SystemExit(f"weights file {weights} for {name} does not exist (looked in {Path.cwd()}"
                         + (f" and {hub.search_dirs_text()}" if len(path.parts) == 1 else "")
                         + f"); give the path of the file (the official ones are at {registry.HUB_COLLECTION_URL}).")
    return Column(name, found)


def default_columns() -> list[Column]:
    """bicubic and the bundled model, then sst-l and sst-real where their official x4 files are here already."""
    from sst_cli.model import hub, registry

    columns = [Column("bicubic"), Column(registry.BUNDLED)]
    for name in ("sst-l", "sst-real"):
        path = hub.cached_official(registry.official_file_for(registry.get_variant(name), SCALE))
        if path is not None:
            columns.append(Column(name, path))
    return columns


def weights_file(column: Column) -> Path | None:
    """The file a column's model loads: its own, the bundled one, or the official one (fetched once)."""
    from sst_cli.errors import SSTError
    from sst_cli.model import hub, registry
    from sst_cli.model.weights import bundled_path

    if column.weights is not None or column.name == "bicubic":
        return column.weights
    variant = registry.get_variant(column.name)
    if variant.bundled:
        return bundled_path(SCALE)
    try:
        return hub.fetch_official(registry.official_file_for(variant, SCALE))
    except (KeyError, SSTError) as exc:  # KeyError: no official x4 file
        text = str(exc.args[0]) if isinstance(exc, KeyError) else str(exc)
        raise SystemExit(f"--model {column.name}: " + text.replace("pass --weights FILE", "write --model "
                         f"{column.name}=FILE").rstrip(".") + ".") from None


def sampled(name: str) -> bool:
    """Whether ``name`` is a network sampled from seeded noise (sst-real): it takes a seed and a guidance."""
    from sst_cli.model import registry

    return name != "bicubic" and registry.get_variant(name).type == "EDMUNet"


# ----------------------------------------------------------------------------------------------- crop
def textured_crop(pixels: np.ndarray, size: int) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the ``size`` square (or the whole side, if smaller) with the most gradient energy."""
    h, w = pixels.shape[:2]
    ch, cw = min(size, h), min(size, w)
    luma = pixels[..., :3].astype(np.float64).mean(axis=2) if pixels.ndim == 3 else pixels.astype(np.float64)
    energy = np.zeros((h, w))
    energy[:, :-1] += np.diff(luma, axis=1) ** 2
    energy[:-1, :] += np.diff(luma, axis=0) ** 2
    summed = np.zeros((h + 1, w + 1))
    summed[1:, 1:] = energy.cumsum(0).cumsum(1)
    boxes = summed[ch:, cw:] - summed[:-ch, cw:] - summed[ch:, :-cw] + summed[:-ch, :-cw]
    y, x = np.unravel_index(int(np.argmax(boxes)), boxes.shape)
    return int(x), int(y), cw, ch


def parse_crop(text: str, width: int, height: int) -> tuple[int, int, int, int]:
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise SystemExit(f"--crop must be x,y,w,h in input pixels (got '{text}').") from None
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > width or y + h > height:
        raise SystemExit(f"--crop {text} does not lie inside the {width}x{height} image.")
    return x, y, w, h


def region_around(crop: tuple[int, int, int, int], width: int, height: int, align: int,
                  margin: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the crop and ``margin`` pixels of context, clipped to the image, its start a multiple of
    ``align`` (the model's windows then are the whole image's windows, as the tiler's tile starts are)."""
    x, y, w, h = crop
    x0, y0 = max(0, x - margin) // align * align, max(0, y - margin) // align * align
    x1, y1 = min(width, x + w + margin), min(height, y + h + margin)
    return x0, y0, x1, y1


def upscale_crop(up: Any, pixels: np.ndarray, crop: tuple[int, int, int, int], margin: int | None = None) -> np.ndarray:
    """The upscaler's result for the whole image, at the crop: the crop and its context upscaled, cut out.

    ``margin`` defaults to the larger of MIN_MARGIN and the model's window alignment. A network whose every
    output pixel depends on the whole image (esc-rib: kernels predicted from the image's mean) is given the
    whole image."""
    from sst_cli.model import placement
    from sst_cli.upscale.tiling import model_cost, window_align

    h, w = pixels.shape[:2]
    align = window_align(up)
    margin = max(MIN_MARGIN, align) if margin is None else margin
    cost = model_cost(up)
    if cost is not None and cost.receptive_field is None:
        x0, y0, x1, y1 = 0, 0, w, h
    else:
        x0, y0, x1, y1 = region_around(crop, w, h, align, margin)
    with placement.region_at(y0, x0):  # noise drawn by pixel (sst-real) is drawn where the region lies
        out = up(np.ascontiguousarray(pixels[y0:y1, x0:x1]))
    s = int(up.scale)
    x, y, cw, ch = crop
    return out[s * (y - y0) : s * (y - y0 + ch), s * (x - x0) : s * (x - x0 + cw)]


# --------------------------------------------------------------------------------------------- layout
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _wrap(text: str, font: Any, width: int, draw: ImageDraw.ImageDraw) -> list[str]:
    """``text`` broken at spaces into lines no wider than ``width`` pixels (a longer word stays whole)."""
    lines: list[str] = []
    for part in text.split("\n"):
        line = ""
        for word in part.split(" "):
            trial = f"{line} {word}".strip()
            if line and draw.textlength(trial, font=font) > width:
                lines.append(line)
                line = word
            else:
                line = trial
        lines.append(line)
    return lines


def layout(panels: list[tuple[str, np.ndarray]], font_size: int = FONT_SIZE) -> tuple[Image.Image, list[list[int]]]:
    """One row of panels, each under its label (wrapped to the panel's width), on white; and each panel's
    [x, y, w, h] in the picture."""
    font = _font(font_size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    wrapped = [_wrap(label, font, arr.shape[1] - 8, probe) for label, arr in panels]
    line_h = font_size + 4
    top = 6 + line_h * max(len(lines) for lines in wrapped) + 4
    width = sum(arr.shape[1] for _, arr in panels) + GAP * (len(panels) - 1)
    height = top + max(arr.shape[0] for _, arr in panels)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    boxes, x = [], 0
    for (_, arr), lines in zip(panels, wrapped, strict=True):
        canvas.paste(Image.fromarray(arr).convert("RGB"), (x, top))
        for i, line in enumerate(lines):
            draw.text((x + 4, 6 + i * line_h), line, fill="black", font=font)
        boxes.append([x, top, arr.shape[1], arr.shape[0]])
        x += arr.shape[1] + GAP
    return canvas, boxes


def enlarged(pixels: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement: each input pixel becomes a factor x factor block."""
    return pixels.repeat(factor, axis=0).repeat(factor, axis=1)


# ----------------------------------------------------------------------------------------------- main
def read_photo(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB, upright (EXIF orientation applied), as given: the low-resolution input."""
    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def run_column(column: Column, path: Path | None, pixels: np.ndarray, crop: tuple[int, int, int, int],
               args: argparse.Namespace) -> tuple[str, np.ndarray, dict[str, Any]]:
    """Load one column's model (from ``path``, its :func:`weights_file`), upscale the crop; its label, panel and
    record."""
    import sst_cli
    from sst_cli.model import registry

    noise = {"noise_seed": args.seed, "guidance": args.guidance} if sampled(column.name) else {}
    up = sst_cli.load_upscaler(column.name, SCALE, weights=str(path) if path else None, device=args.device,
                               dtype=args.dtype, **noise)
    panel = upscale_crop(up, pixels, crop, args.margin)
    record: dict[str, Any] = {"model": up.name, "column": column.name, "weights": path.name if path else None,
                              "sha256": file_sha256(path)[:16] if path else None, "dtype": str(up.dtype).split(".")[-1],
                              "device": str(up.device)}
    lines = [f"{up.name} x{SCALE}"]
    if path is None:
        lines.append("built in, no weights")
    else:
        lines.append(path.name + (" (bundled)" if column.name == registry.BUNDLED and column.weights is None else ""))
    recipe = getattr(up.model, "recipe", None)
    if recipe:
        record.update(recipe)
        lines.append(f"seed {recipe['seed']}, guidance {recipe['guidance']:g}")
    return "\n".join(lines), panel, record


def remake_command(image: Path, crop: tuple[int, int, int, int], columns: list[Column], args: argparse.Namespace,
                   out: Path) -> str:
    parts = ["python", "benchmarks/side_by_side.py", str(image), "--crop", ",".join(map(str, crop))]
    for c in columns:
        parts += ["--model", c.name + (f"={c.weights}" if c.weights else "")]
    parts += ["--seed", str(args.seed)] + (["--guidance", f"{args.guidance:g}"] if args.guidance is not None else [])
    if args.margin is not None:
        parts += ["--margin", str(args.margin)]
    return shlex.join([*parts, "--out", str(out)])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("image", nargs="?", type=Path, help=f"the low-resolution photo (default: {DEFAULT_PHOTO})")
    parser.add_argument("--crop", help="x,y,w,h in input pixels (default: the most textured --crop-size square)")
    parser.add_argument("--crop-size", type=int, default=CROP_SIZE, help="side of the automatic crop, input pixels")
    parser.add_argument("--model", action="append", metavar="NAME[=WEIGHTS]",
                        help="a column, repeatable (default: bicubic, sst-tiny, and sst-l, sst-real when here)")
    parser.add_argument("--seed", type=int, default=0, help="the noise seed of sampled models (sst-real)")
    parser.add_argument("--guidance", type=float, help="sst-real's guidance (default: the model's own, 2.0)")
    parser.add_argument("--margin", type=int, help="input pixels of context around the crop (default: "
                        f"max({MIN_MARGIN}, the model's window alignment))")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--font-size", type=int, default=FONT_SIZE)
    parser.add_argument("--out", type=Path, default=Path("side_by_side.png"),
                        help="the picture (.png, or .jpg for JPEG quality 90); its settings go beside it as .json")
    return parser


def main(argv: list[str] | None = None) -> int:
    from sst_cli import __version__
    from sst_cli.errors import SSTError
    from sst_cli.io.files import atomic_write, atomic_write_text

    args = build_parser().parse_args(argv)
    image = args.image or Path(os.path.relpath(DEFAULT_PHOTO))  # recorded as run: ../shared/... from the repository
    if not image.is_file():
        raise SystemExit(f"image {image} does not exist" + ("" if args.image else " (../shared is not here)")
                         + "; pass the photo to use.")
    columns = [parse_column(t) for t in args.model] if args.model else default_columns()
    if args.crop_size <= 0 or (args.margin is not None and args.margin < 0):
        raise SystemExit("--crop-size must be positive and --margin not negative.")
    files = [weights_file(c) for c in columns]  # every file found (or fetched) before any model runs
    pixels = read_photo(image)
    h, w = pixels.shape[:2]
    crop = parse_crop(args.crop, w, h) if args.crop else textured_crop(pixels, args.crop_size)
    x, y, cw, ch = crop
    label = f"{image.name} {cw}x{ch} at ({x},{y})\ninput, nearest-neighbour x{SCALE}"
    panels = [(label, enlarged(pixels[y : y + ch, x : x + cw], SCALE))]
    records = []
    try:
        for column, path in zip(columns, files, strict=True):
            label, panel, record = run_column(column, path, pixels, crop, args)
            panels.append((label, panel))
            records.append(record)
            print(f"{record['model']}: {label.splitlines()[1]}", file=sys.stderr)
    except SSTError as exc:
        raise SystemExit(f"error: {exc}") from None
    canvas, boxes = layout(panels, args.font_size)
    out = args.out
    jpeg = out.suffix.lower() in (".jpg", ".jpeg")
    atomic_write(out, lambda tmp: canvas.save(tmp, format="JPEG", quality=90) if jpeg
                 else canvas.save(tmp, format="PNG", optimize=True))
    for record, (label, _), box in zip(records, panels[1:], boxes[1:], strict=True):
        record.update(label=label, box=box)
    settings = {
        "image": str(image), "image_sha256": file_sha256(image)[:16], "image_size": [w, h], "scale": SCALE,
        "crop": list(crop), "crop_chosen": "given" if args.crop else f"most gradient energy, {args.crop_size} square",
        "margin": args.margin, "seed": args.seed, "guidance": args.guidance, "panels": records,
        "input_panel": {"label": panels[0][0], "box": boxes[0]}, "picture_size": list(canvas.size),
        "sst_version": __version__, "python": platform.python_version(),
        "command": remake_command(image, crop, columns, args, out),
    }
    atomic_write_text(out.with_suffix(".json"), json.dumps(settings, indent=1) + "\n")
    print(f"wrote {out} ({canvas.width}x{canvas.height}, {out.stat().st_size // 1024} KB) and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
