"""Benchmark evaluation with the field's conventions (``sst eval``; see shared/design/METRICS.md).

Finds a dataset (name, alias or folder) and its layout, gets each image's LR (the shipped file when
there is one, else our MATLAB-style bicubic of the mod-cropped HR, rounded to uint8), runs the model
through the shared tiler, quantises the output to uint8 and measures the metrics asked for (Y-PSNR / Y-SSIM
by default; any of ``registry.METRICS``) with border crop = scale. A dataset's score is the mean of its
per-image values. With ``lq_only`` each dataset is a folder of low-quality inputs without ground truth: the
model upscales each and only no-reference metrics are computed (NIQE by default; crop border 0).

Layouts understood, for scale ``s``:

* BasicSR / SwinIR: ``<set>/HR/<stem>.png`` + ``<set>/LR_bicubic/X<s>/<stem>x<s>.png``
  (also DIV2K's ``<prefix>_HR`` + ``<prefix>_LR_bicubic/X<s>``);
* HAT / BasicSR test sets: ``<set>/GTmod<k>/<stem>.png`` (k a multiple of s) + ``<set>/LRbicx<s>/<stem>.png``;
* a plain folder of HR images (LR always generated).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn

import torch

from ..distributed import Dist
from ..errors import SSTError
from ..model.bicubic import quantize_uint8
from ..runtime import tf32_settings
from ..upscale.tiling import plan_tiles, resolve_tile, upscale_tensor
from .datasets import (
    Dataset,
    Layout,
    Pair,
    default_data_root,
    discover,
    discover_lq,
    generate_lr,
    mod_crop,
    read_rgb_u8,
    resolve_datasets,
    to_tensor,
)
from .metrics import Scorer, load_scorers, measure
from .niqe import NiqeUndefined, check_size
from .registry import METRICS
from .report import LQ_TEXT, NIQE_TEXT, SETTINGS_TEXT, EvalOptions, EvalReport, EvalResult, ImageResult, save_png


# ------------------------------------------------------------------------------------------ running
@dataclass(frozen=True)
class Task:
    dataset: Dataset
    scale: int
    layout: Layout


def plan(datasets: Iterable[str], scales: Iterable[int], data_root: str | os.PathLike[str],
         lq_only: bool = False) -> list[Task]:
    """Resolve every dataset and layout up front, so a missing one fails before any model work. With
    ``lq_only`` every dataset is a folder of low-quality inputs (:func:`discover_lq`)."""
    resolved = resolve_datasets(datasets, data_root)  # every missing one named at once
    if not resolved:
        raise SSTError("no dataset given; pass --dataset Set5,Set14,... or a folder.")
    return [Task(ds, s, discover_lq(ds) if lq_only else discover(ds, s)) for ds in resolved for s in scales]


def paper_variant(options: EvalOptions, upscaler: Any) -> str | None:
    """Our variant name when the model evaluated is an official SST variant, else None. The upscaler's
    name is the network that ran, decided by the weights (see :func:`sst_cli.model.identify.identify`)."""
    from ..model.registry import VARIANTS, get_variant

    if options.model == "bicubic":
        return None
    name = getattr(upscaler, "name", None)
    if name is None and options.model:
        try:
            name = get_variant(options.model).name
        except KeyError:
            return None
    return name if name in VARIANTS else None


def paper_comparison(variant: str | None, result: EvalResult) -> dict[str, Any] | None:
    """The paper's PSNR/SSIM for this variant, dataset and scale, and our delta; None if not published."""
    from ..paper import quality

    if variant is None:
        return None
    q = quality(variant, result.dataset, result.scale)
    if q is None:
        return None
    ours = result.means
    out = dict(q, method=variant)
    if "psnr_y" in ours and q.get("psnr_y") is not None:
        out["delta_psnr_y"] = ours["psnr_y"] - q["psnr_y"]
    if "ssim_y" in ours and q.get("ssim_y") is not None:
        out["delta_ssim_y"] = ours["ssim_y"] - q["ssim_y"]
    return out


ImageCallback = Callable[[Task, str], None]


def evaluate_task(upscaler: Any, task: Task, options: EvalOptions, on_image: ImageCallback | None = None,
                  scorers: Mapping[str, Scorer] | None = None) -> EvalResult:
    """Run one dataset at one scale; unreadable or mismatched images are skipped and reported. pyiqa's metrics
    use ``scorers`` (loaded once per run by :func:`run_eval`), else they are loaded here for this call."""
    s = task.scale
    cb = options.crop_for(s)
    names = tuple(options.metrics or ())
    if scorers is None:
        scorers = load_scorers(names, upscaler.device)
    res = EvalResult(upscaler.name, task.dataset.name, s, str(task.dataset.path), task.layout.kind, cb, names)
    min_side = 2 * cb + (11 if any(m.startswith("ssim") for m in names) else 1)
    start = time.perf_counter()
    for pair in task.layout.pairs:
        try:
            if task.layout.kind == "lq":
                res.images.append(_evaluate_lq_image(upscaler, pair, s, cb, options, task.dataset.name, scorers))
            else:
                res.images.append(_evaluate_image(upscaler, pair, s, cb, min_side, options, task.dataset.name,
                                                  scorers))
        except _Skip as exc:
            res.skipped.append({"name": pair.name, "reason": str(exc)})
        if on_image is not None:
            on_image(task, pair.name)
    res.seconds = time.perf_counter() - start
    return res


def evaluate_model(model: torch.nn.Module, tasks: Iterable[Task], name: str = "model",
                   options: EvalOptions | None = None, dist: Dist | None = None) -> list[EvalResult]:
    """Evaluate an in-memory model (training validation) through :func:`evaluate_task`, as ``sst eval``.

    The model runs in float32 (as ``sst eval`` does by default) on the device of its parameters, whole image
    (tile 0), with the default metrics and crop border unless ``options`` says otherwise. A model routed
    through a kernel that refuses float32 (fa2/3/4, sdpa-flash, sdpa-cudnn: picked for bf16 training)
    runs through the backend ``auto`` picks for float32 there instead; :func:`validation_setup` says which.
    The model is put in eval mode (and that backend) for the call and given back as it was. With ``dist``
    the images are shared out among the ranks (:func:`evaluate_shared`), and every rank gets the whole result.
    """
    from ..upscale.upscaler import Upscaler

    opts = options or EvalOptions(datasets=[], tile=0)
    device, dtype, backend = validation_setup(model)
    upscaler = Upscaler(model, name, int(model.scale), device, dtype, backend, "in memory", tile=opts.tile)
    was_training, own_backend = model.training, getattr(model, "backend", None)
    model.eval()
    if own_backend is not None and backend != own_backend:
        model.set_backend(backend)
    try:
        return [evaluate_shared(upscaler, task, opts, dist or Dist()) for task in tasks]
    finally:
        model.train(was_training)
        if own_backend is not None and backend != own_backend:
            model.set_backend(own_backend)


def validation_setup(model: torch.nn.Module) -> tuple[torch.device, torch.dtype, str]:
    """(device, dtype, backend) :func:`evaluate_model` runs ``model`` with: float32, and the model's own
    backend when it runs float32 on that device, else the one ``auto`` picks for float32."""
    from ..model.attention import fp32_backend

    device = next(iter(model.parameters()), torch.empty(0)).device
    own = getattr(model, "backend", None)
    if own is None:  # no attention (bicubic)
        return device, torch.float32, "none"
    with_bias = str(getattr(model, "config", {}).get("attn_type", "RIB")).lower() == "rpb"
    return device, torch.float32, fp32_backend(str(own), device, with_bias)


def evaluate_shared(upscaler: Any, task: Task, options: EvalOptions, dist: Dist,
                    on_image: ImageCallback | None = None, scorers: Mapping[str, Scorer] | None = None) -> EvalResult:
    """:func:`evaluate_task` with the images shared out among ``dist``'s ranks (round-robin); every rank
    returns the whole result, images in the dataset's order, so the means are those of one process."""
    if scorers is None:
        scorers = load_scorers(options.metrics or (), upscaler.device)
    if not dist.active:
        return evaluate_task(upscaler, task, options, on_image, scorers)
    pairs = task.layout.pairs
    start = time.perf_counter()
    mine = [(i, evaluate_task(upscaler, _with_pairs(task, (pairs[i],)), options, on_image, scorers))
            for i in dist.shard(range(len(pairs)))]
    parts = dist.gather((mine, time.perf_counter() - start))
    merged = evaluate_task(upscaler, _with_pairs(task, ()), options, scorers=scorers)  # the header, no images
    for _, one in sorted((item for done, _ in parts for item in done), key=lambda item: item[0]):
        merged.images += one.images
        merged.skipped += one.skipped
    merged.seconds = max(seconds for _, seconds in parts)  # the wall time of the slowest rank
    return merged


def _with_pairs(task: Task, pairs: tuple[Pair, ...]) -> Task:
    return replace(task, layout=replace(task.layout, pairs=pairs))


class _Skip(Exception):
    """This image cannot be evaluated; the reason is reported and the batch goes on."""


def _evaluate_image(upscaler: Any, pair: Pair, s: int, cb: int, min_side: int, options: EvalOptions,
                    dataset: str, scorers: Mapping[str, Scorer]) -> ImageResult:
    assert pair.hr is not None  # a benchmark layout: every image has its ground truth
    try:
        hr, gray = read_rgb_u8(pair.hr)
        read_size = f"{hr.shape[1]}x{hr.shape[0]}"
        hr = mod_crop(hr, s)
        if pair.lr is not None:
            lr, _ = read_rgb_u8(pair.lr)
            source = "shipped"
        else:
            lr, source = None, "generated"
    except SSTError as exc:
        raise _Skip(f"unreadable image ({exc})") from None
    if min(hr.shape[:2]) < max(min_side, s):
        raise _Skip(f"too small for x{s} with crop border {cb}: {read_size}, {hr.shape[1]}x{hr.shape[0]} after the "
                    f"crop to a multiple of {s}, needs at least {max(min_side, s)} a side")
    _check_niqe_size(hr.shape[0], hr.shape[1], cb, options)
    if lr is None:
        lr = generate_lr(hr, s)
    elif lr.shape[:2] != (hr.shape[0] // s, hr.shape[1] // s):
        raise _Skip(f"LR {lr.shape[1]}x{lr.shape[0]} is not HR {hr.shape[1]}x{hr.shape[0]} / {s}")
    sr_u8, tiles, seconds = _upscale(upscaler, lr, s, options)
    if options.save_dir:
        save_png(sr_u8, Path(options.save_dir) / dataset / f"X{s}" / f"{pair.name}.png")
    vals = _measure(sr_u8, hr, cb, options, scorers)
    return ImageResult(pair.name, vals, source, (hr.shape[0], hr.shape[1]), gray, tiles, seconds)


def _evaluate_lq_image(upscaler: Any, pair: Pair, s: int, cb: int, options: EvalOptions, dataset: str,
                       scorers: Mapping[str, Scorer]) -> ImageResult:
    """One input of an LQ-only dataset: upscaled, then scored by no-reference metrics on the SR image alone."""
    assert pair.lr is not None
    try:
        lq, gray = read_rgb_u8(pair.lr)
    except SSTError as exc:
        raise _Skip(f"unreadable image ({exc})") from None
    h, w = lq.shape[0] * s, lq.shape[1] * s
    if min(h, w) <= 2 * cb:
        raise _Skip(f"too small for crop border {cb}: {lq.shape[1]}x{lq.shape[0]}, {w}x{h} at x{s}")
    _check_niqe_size(h, w, cb, options)
    sr_u8, tiles, seconds = _upscale(upscaler, lq, s, options)
    if options.save_dir:
        save_png(sr_u8, Path(options.save_dir) / dataset / f"X{s}" / f"{pair.name}.png")
    return ImageResult(pair.name, _measure(sr_u8, None, cb, options, scorers), "lq", (h, w), gray, tiles, seconds)


def _upscale(upscaler: Any, lr: Any, s: int, options: EvalOptions) -> tuple[Any, int, float]:
    """The model's x``s`` output of a uint8 LR image, rounded to uint8, its tile count and model seconds."""
    x = to_tensor(lr)
    tile = resolve_tile(upscaler, options.tile, x.shape[2], x.shape[3], whole_if_fits=True)
    tiles = plan_tiles(upscaler, x.shape[2], x.shape[3], tile, options.overlap).count
    t0 = time.perf_counter()
    sr = upscale_tensor(upscaler, x, tile=tile, overlap=options.overlap, tta=options.tta)
    seconds = time.perf_counter() - t0
    sr_u8 = quantize_uint8(sr[0].permute(1, 2, 0))
    if sr_u8.shape[:2] != (lr.shape[0] * s, lr.shape[1] * s):
        raise SSTError(f"the model returned {sr_u8.shape[1]}x{sr_u8.shape[0]} for a x{s} input of "
                       f"{lr.shape[1]}x{lr.shape[0]}; is it really a x{s} model?")
    return sr_u8, tiles, seconds


def _check_niqe_size(h: int, w: int, cb: int, options: EvalOptions) -> None:
    """Before the model runs: an SR image NIQE cannot score is skipped with the reason."""
    if "niqe" in (options.metrics or ()):
        try:
            check_size(h, w, cb)
        except NiqeUndefined as exc:
            raise _Skip(str(exc)) from None


def _measure(sr_u8: Any, hr: Any, cb: int, options: EvalOptions, scorers: Mapping[str, Scorer]) -> dict[str, float]:
    try:
        return measure(sr_u8, hr, cb, options.metrics or (), scorers)
    except NiqeUndefined as exc:  # e.g. a flat image: no 96x96 block with texture
        raise _Skip(str(exc)) from None


def _settings(options: EvalOptions, upscalers: dict[int, Any], tasks: list[Task]) -> dict[str, Any]:
    from .. import __version__ as sst_version

    first = next(iter(upscalers.values()), None)
    return {
        "model": first.name if first else options.model,
        "model_source": {str(s): u.source for s, u in upscalers.items()},
        "weights_sha256": {str(s): u.weights_sha256 for s, u in upscalers.items()},
        "weights": options.weights,
        "random_weights": options.random_weights,
        **({"seed": options.seed} if options.random_weights else {}),
        "datasets": list(dict.fromkeys(t.dataset.name for t in tasks)),
        "scales": sorted(upscalers),
        "data_root": str(options.data_root),
        "metrics": list(options.metrics or ()),
        "metric_info": {name: METRICS[name].info() for name in options.metrics or ()},
        "crop_border": options.crop_border if options.crop_border is not None else (0 if options.lq_only else "scale"),
        "lq_only": options.lq_only,
        "device": str(first.device) if first else options.device,
        "dtype": str(first.dtype).removeprefix("torch.") if first else options.dtype,
        **tf32_settings(),  # "float32" is IEEE fp32 unless these say TF32 ran (--dtype tf32)
        "backend": first.backend if first else options.backend,
        "tile": options.tile,
        "overlap": options.overlap,
        "tta": options.tta,
        **SETTINGS_TEXT,
        **({"niqe": NIQE_TEXT} if "niqe" in (options.metrics or ()) else {}),
        **({"lq_only_note": LQ_TEXT} if options.lq_only else {}),
        **_pyiqa_version(options),
        "sst_version": sst_version,
        "torch_version": torch.__version__,
    }


def _pyiqa_version(options: EvalOptions) -> dict[str, str]:
    """The pyiqa version behind pyiqa's scores, when there are some."""
    if not any(METRICS[n].computed_by == "pyiqa" for n in options.metrics or ()):
        return {}
    from importlib.metadata import PackageNotFoundError, version

    try:
        return {"pyiqa_version": version("pyiqa")}
    except PackageNotFoundError:
        return {}


def eval_dtype(dtype: str) -> str:
    """``auto`` means fp32 for evaluation on every device: the papers' tables are fp32, and bf16 moves Y-PSNR
    (the bundled model, Set5/Set14 x2/x4: -0.003 to -0.012 dB); bf16/fp16 stay available when asked for."""
    return "fp32" if dtype == "auto" else dtype


def run_eval(
    options: EvalOptions,
    on_image: ImageCallback | None = None,
    on_plan: Callable[[list[Task]], None] | None = None,
    on_model: Callable[[Any], None] | None = None,
    dist: Dist | None = None,
) -> EvalReport:
    """Evaluate every dataset at every scale, one model in memory at a time (scales outer).

    With ``dist`` (several processes under torchrun) each rank evaluates its share of every dataset and
    every rank returns the whole report, equal to one process's to the last digit.
    """
    dist = dist or Dist()
    from ..upscale.upscaler import load_upscaler

    def load(scale: int | None) -> Any:
        return load_upscaler(model=options.model, weights=options.weights, scale=scale, device=options.device,
                             dtype=eval_dtype(options.dtype), backend=options.backend,
                             random_weights=options.random_weights, seed=options.seed)

    preloaded = None
    scales = list(dict.fromkeys(options.scales or []))
    if not scales:
        if options.weights and options.model != "bicubic":
            try:
                preloaded = load(None)  # a checkpoint knows its own scale
            except SSTError as exc:
                _raise_with_missing_datasets(exc, options)
            scales = [preloaded.scale]
        else:
            scales = [4]
    tasks = plan(options.datasets, scales, options.data_root, options.lq_only)
    # pyiqa's metrics once per run, on the evaluation device, before any model is loaded
    scorers = load_scorers(options.metrics or (), options.device)
    if on_plan is not None:
        on_plan(tasks)
    results: list[EvalResult] = []
    upscalers: dict[int, Any] = {}
    for s in scales:
        upscaler = preloaded if preloaded is not None and preloaded.scale == s else load(s)
        upscalers[s] = _Info.of(upscaler)
        if on_model is not None:
            on_model(upscaler)
        variant = paper_variant(options, upscaler) if options.compare_paper else None
        for task in (t for t in tasks if t.scale == s):
            res = evaluate_shared(upscaler, task, options, dist, on_image, scorers)
            if options.compare_paper:
                res.paper = paper_comparison(variant, res)
            results.append(res)
        del upscaler
        preloaded = None
    order = {spec: i for i, spec in enumerate(dict.fromkeys(t.dataset.name for t in tasks))}
    results.sort(key=lambda r: (order[r.dataset], r.scale))
    settings = _settings(options, upscalers, tasks)
    settings["compare_paper"] = options.compare_paper
    settings["processes"] = dist.world
    return EvalReport(results, settings)


def _raise_with_missing_datasets(exc: SSTError, options: EvalOptions) -> NoReturn:
    """The weights could not be had: name the missing datasets in the same answer, so that one run shows
    every problem instead of one per try."""
    try:
        resolve_datasets(options.datasets, options.data_root)
    except SSTError as missing:
        raise SSTError(f"{exc} Also, {missing}") from None
    raise exc


@dataclass(frozen=True)
class _Info:
    """What the settings record about a loaded model, without keeping the model alive."""

    name: str
    source: str
    device: Any
    dtype: Any
    backend: str
    scale: int
    weights_sha256: str

    @classmethod
    def of(cls, u: Any) -> _Info:
        from ..upscale.manifest import weights_fingerprint

        return cls(u.name, u.source, u.device, u.dtype, u.backend, u.scale, weights_fingerprint(u))



def evaluate(
    datasets: str | Iterable[str],
    model: str | None = None,
    scale: int | Iterable[int] | None = None,
    weights: str | None = None,
    data_root: str | os.PathLike[str] | None = None,
    **options: Any,
) -> EvalReport:
    """Y-PSNR/SSIM (or any ``metrics``) of a model on benchmark sets, as ``sst eval`` reports them.

    ``evaluate("Set5", scale=4)`` evaluates the bundled model; ``model``/``weights`` as in
    :func:`sst_cli.load_upscaler`; ``data_root`` defaults to $SST_DATA_ROOT, else ./datasets; other keywords
    are :class:`EvalOptions` fields (``metrics=("psnr", "niqe")``, ``lq_only=True`` for folders of low-quality
    images without ground truth, ``tile``, ``device``, ``dtype``, ...). Returns the report (``.results``,
    ``.to_dict()``).
    """
    names = [datasets] if isinstance(datasets, str) else list(datasets)
    scales = None if scale is None else ([scale] if isinstance(scale, int) else list(scale))
    root = data_root if data_root is not None else default_data_root()
    return run_eval(EvalOptions(datasets=names, scales=scales, data_root=str(root), model=model,
                                weights=weights, **options))
