"""LPIPS, DISTS, MUSIQ, MANIQA and CLIPIQA through pyiqa, the field's library (the optional extra ``sst[iqa]``).

    scorer = load_scorer("lpips", "cpu")     # SSTError in one sentence if pyiqa or the weights are missing
    value = scorer(sr, hr)                   # uint8 (H, W, 3) RGB arrays; hr is None for no-reference metrics

The names and pyiqa settings are those of the official SSTReal validation (``options/test/SSTReal_X4.yaml``:
clipiqa, musiq, maniqa through pyiqa's defaults) plus the two full-reference metrics papers report beside
them. pyiqa takes (N, 3, H, W) float RGB in [0, 1]; the scorer hands it exactly that (uint8 / 255, RGB order
kept), so a value equals ``pyiqa.create_metric(name)(tensor)`` on the same image to the last digit.

**Weights are never downloaded silently.** Each metric needs weight files that pyiqa fetches on first use
from three hosts (Hugging Face, download.pytorch.org, OpenAI's CDN), mostly without a checksum, and loads
with pickle (``torch.load(weights_only=False)``), where sst itself refuses any ``.pth`` that would run code.
So before building a metric sst checks that every file it needs is already cached (:func:`weight_files`
names them: the same URLs and folders pyiqa would use, read from pyiqa itself) and otherwise stops in one
sentence naming each file, its URL and its folder. ``SST_IQA_DOWNLOAD=1`` lets pyiqa download them (a
demanding user opts into third-party code fetching 0.1-0.9 GB per metric once, knowingly, not in the middle
of an eval on a cluster node without internet). While a metric is built without that opt-in, the network is
off (sockets refused, the Hugging Face hub offline), so a file a newer pyiqa wants and this table does not
know about is an error naming it, never a download.

Where the files go: pyiqa's own weights to ``<torch hub>/pyiqa`` (``pyiqa.utils.download_util
.DEFAULT_CACHE_DIR``), torchvision backbones (LPIPS: AlexNet, DISTS: VGG16) to ``<torch hub>/checkpoints``,
CLIP to ``<torch hub>/clip``, timm's ViT (MANIQA) to the Hugging Face cache; ``<torch hub>`` is
``$TORCH_HOME/hub`` (default ``~/.cache/torch/hub``), the Hugging Face cache follows ``HF_HOME`` /
``HF_HUB_CACHE``.

Importing this module imports neither pyiqa nor torch; :func:`load_scorer` does.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import os
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from unittest import mock
from urllib.parse import urlparse

from ..errors import SSTError, UsageError
from ..io.files import reason

if TYPE_CHECKING:
    import numpy as np
    import torch

DOWNLOAD_ENV = "SST_IQA_DOWNLOAD"
INSTALL_HINT = "pip install 'sst-cli[iqa]'"


@dataclass(frozen=True)
class IqaMetric:
    """One pyiqa metric as sst reports it."""

    name: str  # sst's name (the --metrics word and the column key)
    full_reference: bool  # needs the HR image (LPIPS, DISTS); the others judge the SR image alone
    lower_better: bool  # pyiqa's own ``lower_better``; checked against pyiqa in tests/test_iqa.py
    pyiqa_name: str  # the name pyiqa.create_metric takes
    label: str = ""  # how tables and messages write it

    @property
    def title(self) -> str:
        return self.label or self.name.upper()


PYIQA_METRICS: dict[str, IqaMetric] = {
    m.name: m
    for m in (
        IqaMetric("lpips", full_reference=True, lower_better=True, pyiqa_name="lpips", label="LPIPS"),
        IqaMetric("dists", full_reference=True, lower_better=True, pyiqa_name="dists", label="DISTS"),
        IqaMetric("musiq", full_reference=False, lower_better=False, pyiqa_name="musiq", label="MUSIQ"),
        IqaMetric("maniqa", full_reference=False, lower_better=False, pyiqa_name="maniqa", label="MANIQA"),
        IqaMetric("clipiqa", full_reference=False, lower_better=False, pyiqa_name="clipiqa", label="CLIPIQA"),
    )
}


# ----------------------------------------------------------------------------------------- weight files
@dataclass(frozen=True)
class WeightFile:
    """A file a metric loads, where pyiqa (or torchvision, timm, CLIP) looks for it and where it comes from."""

    path: Path
    url: str
    sha256: str | None = None  # only where the loader checks it (CLIP): a file that fails is fetched again
    folder: str = ""  # where to put it, in words, where that is not simply path.parent (the HF cache)

    def cached(self) -> bool:
        if not self.path.is_file():
            return False
        return self.sha256 is None or _sha256(self.path) == self.sha256

    def describe(self) -> str:
        return f"{_basename(self.url)} from {self.url} into {self.folder or self.path.parent}"


_HASHES: dict[tuple[str, int, int], str] = {}


def _sha256(path: Path) -> str:
    """A file's sha256, remembered per (path, size, mtime): CLIP's RN50.pt is 244 MB, checked at each load."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


def _pyiqa_file(url: str) -> WeightFile:
    """A file pyiqa's ``load_file_from_url`` keeps: its folder is read at call time, as pyiqa reads it."""
    from pyiqa.utils import download_util

    return WeightFile(Path(download_util.DEFAULT_CACHE_DIR) / _basename(url), url)


def _hub_checkpoint(url: str) -> WeightFile:
    """A torchvision backbone: ``torch.hub.load_state_dict_from_url`` keeps it in ``<torch hub>/checkpoints``."""
    import torch.hub

    return WeightFile(Path(torch.hub.get_dir()) / "checkpoints" / _basename(url), url)


def _basename(url: str) -> str:
    return os.path.basename(urlparse(url).path)


def weight_files(name: str) -> list[WeightFile]:
    """Every file pyiqa's default ``name`` metric loads, with the URLs and folders pyiqa itself would use.

    Read from pyiqa, torchvision, timm and CLIP's own tables, so HF_ENDPOINT, TORCH_HOME and HF_HUB_CACHE
    move them as they move the real loads. Needs pyiqa (call :func:`load_scorer` for the checked path)."""
    metric = _metric(name)
    opts = _pyiqa_configs()[metric.pyiqa_name]["metric_opts"]
    if metric.name == "lpips":
        from pyiqa.archs import lpips_arch
        from torchvision.models import AlexNet_Weights

        # pyiqa's LPIPS builds torchvision's AlexNet with IMAGENET1K_V1 weights whatever `pretrained` says
        return [_hub_checkpoint(AlexNet_Weights.IMAGENET1K_V1.url),
                _pyiqa_file(lpips_arch.default_model_urls[f"{opts['version']}_{opts['net']}"])]
    if metric.name == "dists":
        from pyiqa.archs import dists_arch
        from torchvision.models import VGG16_Weights

        return [_hub_checkpoint(VGG16_Weights.IMAGENET1K_V1.url), _pyiqa_file(dists_arch.default_model_urls["url"])]
    if metric.name == "musiq":
        from pyiqa.archs import musiq_arch

        return [_pyiqa_file(musiq_arch.default_model_urls[opts["pretrained"]])]
    if metric.name == "maniqa":
        from pyiqa.archs import maniqa_arch

        return [_timm_file("vit_base_patch8_224"), _pyiqa_file(maniqa_arch.default_model_urls[opts["train_dataset"]])]
    # clipiqa: OpenAI's CLIP (RN50 by default), which pyiqa's loader checks against the sha256 in its URL
    from pyiqa.archs import clip_model

    url = clip_model._MODELS[opts.get("backbone", "RN50")]
    import torch.hub

    return [WeightFile(Path(torch.hub.get_dir()) / "clip" / _basename(url), url, sha256=url.split("/")[-2])]


def _timm_file(architecture: str) -> WeightFile:
    """The pretrained file timm loads for ``architecture`` (MANIQA's ViT) from the Hugging Face cache.

    timm asks the hub for ``model.safetensors`` of the default tag's repository; offline, a cached copy is
    what it finds (``try_to_load_from_cache`` resolves ``refs/main`` as ``hf_hub_download`` does)."""
    import timm
    from huggingface_hub import constants, hf_hub_url, try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(architecture)
    repo, filename = cfg.hf_hub_id, getattr(cfg, "hf_hub_filename", None) or "model.safetensors"
    found = try_to_load_from_cache(repo, filename)
    path = Path(found) if isinstance(found, str) else Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"
    return WeightFile(path, hf_hub_url(repo, filename), folder=f"the Hugging Face cache {constants.HF_HUB_CACHE}")


def missing_weights(name: str) -> list[WeightFile]:
    """The files :func:`weight_files` names that are not cached (or, for CLIP, fail their checksum)."""
    return [f for f in weight_files(name) if not f.cached()]


# ----------------------------------------------------------------------------------------------- scorer
def load_scorer(name: str, device: torch.device | str) -> Callable[[np.ndarray, np.ndarray | None], float]:
    """A scorer for one metric: ``scorer(sr, hr)`` with uint8 HxWx3 RGB arrays (hr None for no-reference
    metrics), returning a float.

    Raises SSTError with one sentence when pyiqa is not installed (naming the extra) or when the metric's
    weights are not cached yet (naming each file, the URL it downloads from on first use and its folder),
    unless ``SST_IQA_DOWNLOAD=1`` lets pyiqa download them."""
    metric = _metric(name)
    _import_pyiqa(metric)
    allow_download = os.environ.get(DOWNLOAD_ENV) == "1"
    missing = missing_weights(metric.name)
    if missing and not allow_download:
        raise SSTError(_missing_sentence(metric, missing))
    import torch

    device = torch.device(device)
    return _Scorer(metric, _build(metric, device, allow_download, missing), device)


class _Scorer:
    """``scorer(sr, hr) -> float``: uint8 HWC RGB to (1, 3, H, W) float32 in [0, 1] on the metric's device."""

    def __init__(self, metric: IqaMetric, net: torch.nn.Module, device: torch.device) -> None:
        self.metric, self.net, self.device = metric, net, device

    def __call__(self, sr: np.ndarray, hr: np.ndarray | None = None) -> float:
        import torch

        target = _to_tensor(sr, self.device)
        if not self.metric.full_reference:
            with torch.no_grad():
                return float(self.net(target).item())
        if hr is None:
            raise ValueError(f"{self.metric.title} is a full-reference metric: pass the HR image")
        if hr.shape != sr.shape:
            raise ValueError(f"{self.metric.title}: SR {sr.shape} and HR {hr.shape} differ in shape")
        with torch.no_grad():
            return float(self.net(target, _to_tensor(hr, self.device)).item())


def _to_tensor(img: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 (H, W, 3) RGB -> float32 (1, 3, H, W) in [0, 1], as pyiqa's own reader (to_tensor) gives it."""
    import numpy as np
    import torch

    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) RGB array, got {img.dtype} {img.shape}")
    x = torch.from_numpy(np.ascontiguousarray(img)).to(device)
    return x.permute(2, 0, 1).unsqueeze(0).float().div(255.0)


def _build(metric: IqaMetric, device: torch.device, allow_download: bool,
           missing: Sequence[WeightFile] = ()) -> torch.nn.Module:
    """pyiqa's metric on ``device``; offline unless downloads are allowed, its chatter off stdout."""
    import pyiqa

    refused: list[str] = []
    # pyiqa prints "Loading pretrained model ..." on stdout, which may carry `sst eval --json -`; downloads
    # (opted in) keep their lines, on stderr
    quiet = contextlib.redirect_stdout(sys.stderr if allow_download else io.StringIO())
    offline = contextlib.nullcontext() if allow_download else _no_network(refused)
    try:
        with quiet, offline:
            net = pyiqa.create_metric(metric.pyiqa_name, as_loss=False, device=device)
    except Exception as exc:
        if refused:
            raise SSTError(
                f"pyiqa tried to download a file for {metric.title} that sst does not know it needs (it reached "
                f"for {refused[0]}): rerun with {DOWNLOAD_ENV}=1 to let it, or report this to sst."
            ) from None
        if missing:
            files = "; ".join(f.describe() for f in missing)
            raise SSTError(f"pyiqa could not download {metric.title}'s weights ({reason(exc)}): {files}.") from None
        raise SSTError(f"pyiqa could not build {metric.title} on {device} ({reason(exc)}).") from None
    if refused:  # built anyway (something inside fell back to a cached copy): still not what was allowed
        raise SSTError(
            f"pyiqa reached for the network ({refused[0]}) while building {metric.title} although every file "
            f"sst knows it needs is cached: rerun with {DOWNLOAD_ENV}=1 to let it, or report this to sst."
        )
    return net


@contextlib.contextmanager
def _no_network(refused: list[str]) -> Iterator[None]:
    """No connection and no DNS while pyiqa builds a metric, and the Hugging Face hub offline (so timm takes
    its cached ViT without asking the hub for a newer revision). Attempts are recorded in ``refused``."""
    from huggingface_hub import constants

    def refuse(address: object) -> OSError:
        refused.append(str(address))
        return OSError(f"sst: network use refused while building a pyiqa metric ({address})")

    def connect(self: socket.socket, address: object) -> None:
        raise refuse(address)

    def getaddrinfo(host: object, port: object, *args: object, **kwargs: object) -> list:
        raise refuse(f"{host}:{port}")

    with mock.patch.object(socket.socket, "connect", connect), \
            mock.patch.object(socket.socket, "connect_ex", connect), \
            mock.patch.object(socket, "getaddrinfo", getaddrinfo), \
            mock.patch.object(constants, "HF_HUB_OFFLINE", True):
        yield


# ---------------------------------------------------------------------------------------------- helpers
def _metric(name: str) -> IqaMetric:
    if name not in PYIQA_METRICS:
        raise UsageError(f"unknown pyiqa metric {name!r}: choose from {', '.join(PYIQA_METRICS)}.")
    return PYIQA_METRICS[name]


def _import_pyiqa(metric: IqaMetric) -> None:
    if importlib.util.find_spec("pyiqa") is None:
        raise SSTError(f"{metric.title} needs pyiqa, which is not installed: {INSTALL_HINT}.")
    try:
        import pyiqa  # noqa: F401
    except Exception as exc:  # a broken install (e.g. a torchvision built for another torch)
        raise SSTError(f"{metric.title} needs pyiqa, which is installed but does not import ({reason(exc)}): "
                       f"reinstall it with {INSTALL_HINT}.") from None


def _pyiqa_configs() -> dict:
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    return DEFAULT_CONFIGS


def _missing_sentence(metric: IqaMetric, missing: list[WeightFile]) -> str:
    files = "; ".join(f.describe() for f in missing)
    return (f"{metric.title} needs weights that are not cached yet ({files}), which pyiqa downloads on first use: "
            f"set {DOWNLOAD_ENV}=1 to let it (off by default: pyiqa fetches most without a checksum and opens its own "
            f"with pickle), "
            f"or put the files there yourself.")
