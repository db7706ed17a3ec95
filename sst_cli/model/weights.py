"""Reading and writing SST weights.

Reads BasicSR ``.pth`` dicts (``params_ema`` preferred, then ``params``, or a bare state dict, with any
``module.`` prefix stripped) through ``torch.load(weights_only=True)``, plain ``.safetensors`` files, and
our own format: safetensors whose metadata holds the network config as JSON. Detects the variant and
scale from the tensors alone, and explains a mismatch in one readable paragraph.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import re
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import SSTError
from ..io.files import atomic_write
from .network import SST, build_model
from .registry import BUNDLED, CLASSIC_WINDOWS, PLUS_WINDOWS, VARIANTS, Variant

HF_COLLECTION = "dslisleedh/sst"
FORMAT_TAG = "sst-cli/1"


@dataclass
class Checkpoint:
    state_dict: dict[str, Tensor]
    path: str
    network_g: dict[str, Any] | None = None  # present in our own format
    meta: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------- reading
def _unwrap(obj: Any, path: str) -> dict[str, Tensor]:
    if isinstance(obj, dict):
        for key in ("params_ema", "params", "state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise SSTError(f"{path} holds no state dict of tensors (expected a BasicSR .pth with 'params_ema' or 'params').")
    return {re.sub(r"^(module\.)+", "", k): v for k, v in obj.items()}


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read weights from ``path`` (.pth/.pt/.safetensors/.sst). Raises SSTError with one sentence."""
    p = Path(path)
    if not p.is_file():
        raise SSTError(f"weights file {p} does not exist.")
    with open(p, "rb") as fh:
        head = fh.read(16)
    if not head:
        raise SSTError(f"weights file {p} is empty.")
    if p.suffix in (".safetensors", ".sst") or _looks_like_safetensors(head):
        return _load_safetensors(p)
    try:
        with warnings.catch_warnings():
            # Old-protocol pickles make the weights-only unpickler warn; the load is still safe.
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # PyTorch's own text is several paragraphs; keep the one fact that matters (what it would call).
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f" (it calls {found.group(1)})" if found else ""
        raise SSTError(
            f"{p} was refused: loading it would run arbitrary code{what}, and sst only loads plain tensor "
            "checkpoints (re-save it as a state dict or .safetensors from code you trust)."
        ) from None
    except Exception as exc:  # noqa: BLE001 - zip/pickle corruption comes in many types
        first = (str(exc).strip().splitlines() or [""])[0][:120]
        raise SSTError(f"{p} is not a readable PyTorch checkpoint ({type(exc).__name__}: {first}).") from None
    return Checkpoint(_unwrap(obj, str(p)), str(p))


def _looks_like_safetensors(head: bytes) -> bool:
    # 8-byte little-endian header length followed by a JSON object.
    return len(head) >= 9 and head[8:9] == b"{"


def _load_safetensors(p: Path) -> Checkpoint:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
            sd = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise SSTError(f"{p} is not a readable safetensors file ({str(exc)[:120]}).") from None
    network_g = json.loads(meta["network_g"]) if "network_g" in meta else None
    extra = json.loads(meta["meta"]) if "meta" in meta else {}
    return Checkpoint({k.removeprefix("module."): v for k, v in sd.items()}, str(p), network_g, extra)


def save_checkpoint(path: str | os.PathLike[str], model: SST, meta: dict[str, Any] | None = None,
                    dtype: torch.dtype | None = None) -> Path:
    """Write our format (safetensors + config JSON in the metadata) atomically."""
    from safetensors.torch import save_file

    sd = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous()
          for k, v in model.state_dict().items()}
    metadata = {"format": FORMAT_TAG, "network_g": json.dumps(model.config), "meta": json.dumps(meta or {})}
    return atomic_write(Path(path), lambda tmp: save_file(sd, str(tmp), metadata=metadata))


# ----------------------------------------------------------------------------------------- detection
def infer_network_g(sd: dict[str, Tensor], path_hint: str = "") -> dict[str, Any]:
    """The constructor keywords implied by a state dict.

    Window sizes leave no trace in RIB weights, so "+" variants are told apart by a ``Plus``/``+`` in the
    file name (the official names carry it); RPB tables do record their window.
    """
    try:
        dim = sd["proj.weight"].shape[0]
        n_blocks = len({m.group(1) for k in sd if (m := re.match(r"body\.(\d+)\.0\.norm_attn\.weight$", k))})
        n_layers = len({m.group(1) for k in sd if (m := re.match(r"body\.0\.(\d+)\.norm_attn\.weight$", k))})
        heads, ranks, windows = [], [], []
        attn_type = "RIB"
        for j in range(n_layers):
            pre = f"body.0.{j}.attn."
            if pre + "to_q" in sd:
                heads.append(sd[pre + "to_q"].shape[0])
                ranks.append(sd[pre + "to_q"].shape[2])
            elif pre + "rpb_table" in sd:
                attn_type = "RPB"
                t = sd[pre + "rpb_table"]
                heads.append(t.shape[1])
                ranks.append(0)
                windows.append((math.isqrt(t.shape[0]) + 1) // 2)
            else:
                attn_type = "none"
                heads.append(0)
                ranks.append(0)
        exp_ratio = sd["body.0.0.ffn.proj.weight"].shape[0] / dim
        up_out = sd["upsampler.up_conv.weight"].shape[0]
    except (KeyError, IndexError) as exc:
        raise SSTError(f"the weights do not look like an SST network (no {exc} tensor).") from None
    cfg: dict[str, Any] = {
        "dim": dim, "n_blocks": n_blocks, "num_heads": heads, "ranks": ranks,
        "exp_ratio": int(exp_ratio) if float(exp_ratio).is_integer() else exp_ratio, "attn_type": attn_type,
        "gate_type": "DWC",
    }
    if "upsampler.feature_conv.weight" in sd:
        inter = sd["upsampler.feature_conv.weight"].shape[0]
        cfg.update(upsampler_type="pixelshuffle", intermediate_dim=inter, upscaling_factor=math.isqrt(up_out // inter))
    else:
        cfg.update(upsampler_type="pixelshuffle_direct", upscaling_factor=math.isqrt(up_out // 3))
    if attn_type == "RIB":
        to_hidden = sd["body.0.0.attn.to_hidden"]
        cfg.update(rib_hidden_dim=to_hidden.shape[1], rib_n_freqs=(to_hidden.shape[0] - 2) // 4)
    variant = match_variant(cfg, plus=is_plus_name(path_hint))
    if windows:
        cfg["window_sizes"] = windows
    elif variant is not None:
        cfg["window_sizes"] = list(variant.window_sizes)
    else:
        cfg["window_sizes"] = list(PLUS_WINDOWS if is_plus_name(path_hint) else CLASSIC_WINDOWS)[:n_layers]
        if n_layers != 6:
            cfg["window_sizes"] = [8, 16, 32, 16, 32, 64][:n_layers]
    return cfg


def is_plus_name(path: str) -> bool:
    name = Path(path).name.lower()
    return "plus" in name or "+" in name


def match_variant(cfg: dict[str, Any], plus: bool = False) -> Variant | None:
    """The registry variant whose shapes equal ``cfg`` (the "+" twin when ``plus``)."""
    for v in VARIANTS.values():
        if v.name.endswith("+") != plus and v.name != "sst-xl+":
            continue
        if (v.dim, v.n_blocks, v.num_heads, list(v.ranks), float(v.exp_ratio), v.upsampler_type) == (
            cfg["dim"], cfg["n_blocks"], cfg["num_heads"][0] if cfg["num_heads"] else None,
            list(cfg["ranks"]), float(cfg["exp_ratio"]), cfg["upsampler_type"],
        ) and (v.intermediate_dim or 64) == cfg.get("intermediate_dim", v.intermediate_dim or 64):
            return v
    return None


def describe_network(cfg: dict[str, Any], path_hint: str = "") -> str:
    v = match_variant(cfg, plus=is_plus_name(path_hint)) or match_variant(cfg, plus=False)
    name = v.name if v else f"a custom SST (dim {cfg['dim']}, {cfg['n_blocks']} blocks)"
    return f"{name} x{cfg['upscaling_factor']}"


# ------------------------------------------------------------------------------------------ loading
def mismatch_summary(model: SST, sd: dict[str, Tensor], path: str) -> str | None:
    """None when ``sd`` fits ``model`` exactly; else one readable paragraph."""
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in sd.items()}
    missing = [k for k in want if k not in have]
    unexpected = [k for k in have if k not in want]
    shaped = [f"{k} (file {list(have[k])}, model {list(want[k])})" for k in want if k in have and have[k] != want[k]]
    if not (missing or unexpected or shaped):
        return None
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shaped)):
        if items:
            more = f" and {len(items) - 3} more" if len(items) > 3 else ""
            parts.append(f"{len(items)} {label} key(s): {', '.join(items[:3])}{more}")
    try:
        looks = f"; the file looks like {describe_network(infer_network_g(sd, path), path)}"
    except SSTError:
        looks = "; the file does not look like an SST network"
    target = describe_network(model.config)
    return f"{path} does not fit {target}: " + "; ".join(parts) + looks + "."


def resample_upsampler(sd: dict[str, Tensor], scale_out: int) -> dict[str, Tensor]:
    """Re-sample ``upsampler.up_conv`` for another scale, as the official fine-tuning loader does:
    view the output channels as (c, s_in, s_in), resize that grid bilinearly to s_out, flatten."""
    w, b = sd["upsampler.up_conv.weight"], sd["upsampler.up_conv.bias"]
    c = 3 if "upsampler.feature_conv.weight" not in sd else sd["upsampler.feature_conv.weight"].shape[0]
    s_in = math.isqrt(w.shape[0] // c)
    if s_in == scale_out:
        return sd
    out_ch, in_ch, kh, kw = w.shape
    grid = w.float().reshape(c, s_in, s_in, in_ch * kh * kw).permute(0, 3, 1, 2)  # (c, in*k*k, s, s)
    grid = F.interpolate(grid, size=(scale_out, scale_out), mode="bilinear", align_corners=False)
    new_w = grid.permute(0, 2, 3, 1).reshape(c * scale_out**2, in_ch, kh, kw).to(w.dtype)
    bgrid = F.interpolate(b.float().reshape(1, c, s_in, s_in), size=(scale_out, scale_out), mode="bilinear",
                          align_corners=False)
    new_b = bgrid.reshape(-1).to(b.dtype)
    return {**sd, "upsampler.up_conv.weight": new_w, "upsampler.up_conv.bias": new_b}


def load_into(model: SST, ckpt: Checkpoint, resample_scale: bool = False) -> SST:
    """Load ``ckpt`` strictly into ``model``; with ``resample_scale`` adapt another scale's upsampler."""
    sd = ckpt.state_dict
    if resample_scale and "upsampler.up_conv.weight" in sd:
        sd = resample_upsampler(sd, model.scale)
    problem = mismatch_summary(model, sd, ckpt.path)
    if problem:
        raise SSTError(problem)
    model.load_state_dict({k: v.to(torch.float32) if v.is_floating_point() else v for k, v in sd.items()})
    return model


def model_from_checkpoint(ckpt: Checkpoint, scale: int | None = None, network_g: dict[str, Any] | None = None,
                          resample_scale: bool = False) -> SST:
    """Build the network the checkpoint describes (or ``network_g``) and load it."""
    cfg = dict(network_g or ckpt.network_g or infer_network_g(ckpt.state_dict, ckpt.path))
    if scale is not None and scale != cfg["upscaling_factor"]:
        if not resample_scale:
            raise SSTError(
                f"{ckpt.path} is a x{cfg['upscaling_factor']} model, not x{scale}; drop --scale or ask for "
                "upsampler re-sampling (fine-tuning only: the result needs training)."
            )
        cfg["upscaling_factor"] = scale
    return load_into(build_model(cfg), ckpt, resample_scale=resample_scale)


# ------------------------------------------------------------------------------------ finding files
def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sst"


def search_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("SST_WEIGHTS_DIR"):
        dirs.append(Path(os.environ["SST_WEIGHTS_DIR"]))
    dirs += [user_cache_dir(), Path.cwd() / "checkpoints"]
    return dirs


def bundled_path(scale: int) -> Path:
    """The bundled sst-tiny weights at ``scale``, shipped inside the package."""
    from importlib import resources

    return Path(str(resources.files("sst_cli.data.weights").joinpath(f"{BUNDLED}_x{scale}.safetensors")))


def find_official(variant: Variant, scale: int) -> Path | None:
    """The first official checkpoint file for ``variant`` x``scale`` found in the search folders."""
    for d in search_dirs():
        for name in variant.checkpoint_names(scale):
            if (d / name).is_file():
                return d / name
    return None


def missing_weights_message(variant: Variant, scale: int) -> str:
    names = " or ".join(variant.checkpoint_names(scale))
    return (f"no weights for {variant.name} x{scale} found ({names}); the authors publish them in their "
            f"Hugging Face collection {HF_COLLECTION}: download one and pass --weights FILE or put it in "
            f"$SST_WEIGHTS_DIR.")


def fetch(url: str, sha256: str | None = None, cache: Path | None = None,
          progress: Callable[[int, int | None], None] | None = None) -> Path:
    """Download ``url`` once into the cache (atomically) and check ``sha256`` when given."""
    cache = cache or user_cache_dir()
    name = Path(urllib.parse.urlparse(url).path).name or "weights.pth"
    target = cache / name
    if not target.is_file():
        def write(tmp: Path) -> None:
            try:
                with urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as out:
                    total = int(resp.headers.get("Content-Length") or 0) or None
                    done = 0
                    while chunk := resp.read(1 << 20):
                        out.write(chunk)
                        done += len(chunk)
                        if progress:
                            progress(done, total)
            except OSError as exc:
                raise SSTError(f"could not download {url} ({exc}).") from None
        atomic_write(target, write)
    if sha256:
        digest = hashlib.sha256(target.read_bytes()).hexdigest()
        if digest.lower() != sha256.lower():
            target.unlink()
            raise SSTError(f"{url} has sha256 {digest}, not the expected {sha256}; the download was removed.")
    return target
