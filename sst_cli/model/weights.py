"""Reading, identifying and writing SST weights.

Reads BasicSR ``.pth`` dicts (``params_ema`` preferred, then ``params``, or a bare state dict, with any
``module.`` prefix stripped) through ``torch.load(weights_only=True)``, plain ``.safetensors`` files, and
our own formats: safetensors whose metadata holds the network config as JSON, and BasicSR ``.pth``
exports with the config beside ``params_ema``. A file that is not a checkpoint at all (an HTML page, a
JSON answer, a Git LFS pointer: what a failed download leaves) is named for what it is.

Which network a file holds is decided by :func:`identify`: the config stored in the file, else its
official file name, else ``--model``; the tensors alone cannot tell a "+" variant from its base (same
shapes, other windows), so that case is refused rather than guessed.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import pickle
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import SSTError
from ..io.files import atomic_write
from .network import SST, build_model
from .registry import BUNDLED, VARIANTS, Variant, get_variant, official_file

FORMAT_TAG = "sst-cli/1"


@dataclass
class Checkpoint:
    state_dict: dict[str, Tensor]
    path: str
    network_g: dict[str, Any] | None = None  # present in our own formats
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


def _stored_config(obj: Any) -> dict[str, Any] | None:
    """The ``network_g`` our BasicSR exports keep beside ``params_ema`` (plain data, weights-only safe)."""
    cfg = obj.get("network_g") if isinstance(obj, dict) else None
    return dict(cfg) if isinstance(cfg, dict) and "dim" in cfg else None


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read weights from ``path`` (.pth/.pt/.safetensors/.sst). Raises SSTError with one sentence."""
    p = Path(path)
    if not p.is_file():
        raise SSTError(f"weights file {p} does not exist.")
    with open(p, "rb") as fh:
        head = fh.read(512)
    if not head:
        raise SSTError(f"weights file {p} is empty.")
    not_weights = _not_a_checkpoint(p, head)  # whatever the extension says
    if not_weights:
        raise SSTError(not_weights)
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
        if found is None and "global" not in str(exc).lower():  # not a refused call: a damaged or foreign file
            raise SSTError(f"{p} is not a readable PyTorch checkpoint (damaged, or another kind of file).") from None
        what = f" (it calls {found.group(1)})" if found else ""
        raise SSTError(
            f"{p} was refused: loading it would run arbitrary code{what}, and sst only loads plain tensor "
            "checkpoints (re-save it as a state dict or .safetensors from code you trust)."
        ) from None
    except Exception as exc:  # noqa: BLE001 - zip/pickle corruption comes in many types
        first = (str(exc).strip().splitlines() or [""])[0][:120]
        raise SSTError(f"{p} is not a readable PyTorch checkpoint ({type(exc).__name__}: {first}).") from None
    return Checkpoint(_unwrap(obj, str(p)), str(p), _stored_config(obj))


def _looks_like_safetensors(head: bytes) -> bool:
    # 8-byte little-endian header length followed by a JSON object.
    return len(head) >= 9 and head[8:9] == b"{"


_AGAIN = "download it again (with --model NAME sst fetches official weights itself)"


def _not_a_checkpoint(p: Path, head: bytes) -> str | None:
    """One sentence saying what ``p`` is when its first bytes show it is text, not weights; else None.

    PyTorch files start with a zip header or a pickle opcode (binary); a failed download typically
    leaves an HTML page, a JSON error, or the Git LFS pointer that stood in for the real file.
    """
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return None
    text = head.decode("utf-8", errors="replace")  # a character cut at the block's end is one U+FFFD
    if text.count("\ufffd") > 1 or any(ch < " " and ch not in "\t\r\n\f" for ch in text):
        return None  # binary: let the PyTorch reader judge it
    lead = text.lstrip("\ufeff \t\r\n")
    low = lead.lower()
    if low.startswith("version https://git-lfs.github.com/spec/"):
        size = re.search(r"^size (\d+)", lead, re.MULTILINE)
        of = f" for a {int(size.group(1)):,}-byte file" if size else ""
        return (f"{p} is a Git LFS pointer{of}, not a checkpoint (the repository was cloned without its LFS "
                f"files); fetch the real file with `git lfs pull`, or {_AGAIN}.")
    if low.startswith(("<!doctype html", "<html", "<head", "<body")) or ("<html" in low and low.startswith("<")):
        title = re.search(r"<title[^>]*>([^<]{1,80})", lead, re.IGNORECASE)
        said = f" titled '{title.group(1).strip()}'" if title else ""
        return (f"{p} is an HTML page{said}, not a checkpoint (a login, error or download page saved in "
                f"place of the file); {_AGAIN}.")
    if low.startswith(("{", "[")):
        said = ""
        try:
            data = json.loads(p.read_text(encoding="utf-8")) if p.stat().st_size < 1 << 20 else None
        except (ValueError, OSError):
            data = None
        if isinstance(data, dict) and isinstance(data.get("error") or data.get("message"), str):
            said = f" saying '{(data.get('error') or data.get('message'))[:100]}'"
        return f"{p} is a JSON file{said}, not a checkpoint (a server's answer saved in place of the file); {_AGAIN}."
    first = lead.splitlines()[0][:60] if lead.strip() else ""
    return f"{p} is a text file (starting '{first}'), not a checkpoint; {_AGAIN}."


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


def _state_dict(model: SST, dtype: torch.dtype | None = None) -> dict[str, Tensor]:
    return {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous()
            for k, v in model.state_dict().items()}


def save_checkpoint(path: str | os.PathLike[str], model: SST, meta: dict[str, Any] | None = None,
                    dtype: torch.dtype | None = None) -> Path:
    """Write our format (safetensors + config JSON in the metadata) atomically."""
    from safetensors.torch import save_file

    sd = _state_dict(model, dtype)
    metadata = {"format": FORMAT_TAG, "network_g": json.dumps(model.config), "meta": json.dumps(meta or {})}
    return atomic_write(Path(path), lambda tmp: save_file(sd, str(tmp), metadata=metadata))


def fingerprint(model: nn.Module) -> str:
    """sha256 of a model's parameters (names, shapes, float32 values): the same for the same weights read
    from .pth or .safetensors, different for any other weights. Recorded in result files and manifests."""
    h = hashlib.sha256()
    state = model.state_dict()
    for name in sorted(state):
        t = state[name].detach().float().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)};".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def save_basicsr(path: str | os.PathLike[str], model: SST) -> Path:
    """Write a BasicSR ``.pth`` (``params_ema``) atomically, with the config beside it as plain data
    (``network_g``), so sst knows the window sizes and BasicSR, which reads only ``params_ema``, is unaffected."""
    sd = _state_dict(model)
    return atomic_write(Path(path), lambda tmp: torch.save({"params_ema": sd, "network_g": dict(model.config)}, tmp))


# ----------------------------------------------------------------------------------------- detection
def infer_network_g(sd: dict[str, Tensor]) -> dict[str, Any]:
    """The constructor keywords the tensors of ``sd`` imply.

    RIB weights leave no trace of the window sizes, so ``window_sizes`` is present only for RPB
    attention, whose bias tables record their window; :func:`identify` supplies it otherwise.
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
    if windows:
        cfg["window_sizes"] = windows
    return cfg


_DEFAULTS = {k: p.default for k, p in inspect.signature(SST.__init__).parameters.items()
             if p.default is not inspect.Parameter.empty}


def _per_layer(value: Any, n: int) -> tuple:
    return tuple(value) if isinstance(value, list | tuple) else (value,) * n


def _shape_key(cfg: dict[str, Any]) -> tuple:
    """Everything in a config that decides the tensors' names and shapes (windows excluded: RIB has none)."""
    c = {**_DEFAULTS, **cfg}
    n = len(c["num_heads"]) if isinstance(c["num_heads"], list | tuple) else len(c["window_sizes"])
    inter = c["intermediate_dim"] if c["upsampler_type"] == "pixelshuffle" else None
    return (c["dim"], c["n_blocks"], _per_layer(c["num_heads"], n), _per_layer(c["ranks"], n), float(c["exp_ratio"]),
            str(c["attn_type"]).upper(), c["upsampler_type"], inter, c["rib_hidden_dim"], c["rib_n_freqs"])


def shape_twins(cfg: dict[str, Any]) -> list[Variant]:
    """Registry variants whose tensors have exactly ``cfg``'s shapes (a base and its "+" share them)."""
    key = _shape_key(cfg)
    return [v for v in VARIANTS.values() if _shape_key(v.network_g(cfg.get("upscaling_factor", 4))) == key]


def match_variant(cfg: dict[str, Any]) -> Variant | None:
    """The registry variant that ``cfg`` builds exactly (shapes and window sizes), or None (a custom SST)."""
    windows = [int(w) for w in cfg.get("window_sizes") or ()]
    return next((v for v in shape_twins(cfg) if list(v.window_sizes) == windows), None)


def describe_network(cfg: dict[str, Any]) -> str:
    """'sst-l+ x4', 'sst-l or sst-l+ x4' (tensors alone), or 'a custom SST (dim 8, 2 blocks) x2'."""
    if "window_sizes" in cfg:
        found = [v] if (v := match_variant(cfg)) else []
    else:
        found = shape_twins(cfg)
    name = " or ".join(v.name for v in found) or f"a custom SST (dim {cfg['dim']}, {cfg['n_blocks']} blocks)"
    return f"{name} x{cfg['upscaling_factor']}"


@dataclass(frozen=True)
class Network:
    """The network a checkpoint holds: what to build, its registry name (None: custom), and why we know."""

    network_g: dict[str, Any]
    variant: Variant | None
    basis: str  # "the config stored in it", "its official file name", "--model", "its tensor shapes"

    @property
    def name(self) -> str | None:
        return self.variant.name if self.variant else None


def identify(ckpt: Checkpoint, model: str | None = None) -> Network:
    """Decide the network ``ckpt`` holds: the config stored in the file, else its official file name, else
    ``model`` (a registry name). A ``model`` that contradicts the file, or a bare state dict whose variant
    the tensors cannot tell (sst-light vs sst-light+, sst vs sst+, sst-l vs sst-l+) with no ``model``,
    is an SSTError; nothing is guessed."""
    try:
        wanted = get_variant(model) if model else None
    except KeyError as exc:
        raise SSTError(str(exc.args[0]) + ".") from None
    named = official_file(ckpt.path)
    if ckpt.network_g:
        found = Network(dict(ckpt.network_g), match_variant(ckpt.network_g), "the config stored in it")
        told = describe_network(found.network_g)
    elif named is not None:
        found = Network(named.variant.network_g(named.scale), named.variant, "its official file name")
        told = f"{named.variant.name} x{named.scale}"
    else:
        shapes = infer_network_g(ckpt.state_dict)
        twins = shape_twins(shapes)
        scale = shapes["upscaling_factor"]
        if wanted is not None and wanted in twins:
            return Network(wanted.network_g(scale), wanted, "--model")
        if wanted is not None:
            raise SSTError(f"--model {wanted.name} contradicts {ckpt.path}, whose tensors are those of "
                           f"{describe_network(shapes)}; drop --model or pass weights of {wanted.name}.")
        if len(twins) == 1:
            return Network(twins[0].network_g(scale), twins[0], "its tensor shapes")
        if twins:
            choices = " or ".join(f"--model {v.name}" for v in twins)
            raise SSTError(f"{ckpt.path} holds {describe_network(shapes)}, which have the same tensors and differ "
                           f"only in window sizes, and neither the file nor its name says which; pass {choices}.")
        if "window_sizes" not in shapes:
            raise SSTError(f"{ckpt.path} holds {describe_network(shapes)} whose window sizes are not stored in "
                           "the file; load it from a .safetensors saved by sst, which keeps its config.")
        return Network(shapes, None, "its tensor shapes")
    if wanted is not None and found.variant is not wanted:
        raise SSTError(f"--model {wanted.name} contradicts {ckpt.path}, which holds {told} (from {found.basis}); "
                       f"drop --model, or pass weights of {wanted.name}.")
    return found


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
        looks = f"; the file looks like {describe_network(infer_network_g(sd))}"
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
                          resample_scale: bool = False, model: str | None = None) -> SST:
    """Build the network the checkpoint holds (see :func:`identify`; ``network_g`` overrides) and load it."""
    cfg = dict(network_g or identify(ckpt, model).network_g)
    if scale is not None and scale != cfg["upscaling_factor"]:
        if not resample_scale:
            raise SSTError(
                f"{ckpt.path} is a x{cfg['upscaling_factor']} model, not x{scale}; drop --scale or ask for "
                "upsampler re-sampling (fine-tuning only: the result needs training)."
            )
        cfg["upscaling_factor"] = scale
    return load_into(build_model(cfg), ckpt, resample_scale=resample_scale)


def bundled_path(scale: int) -> Path:
    """The bundled sst-tiny weights at ``scale``, shipped inside the package."""
    from importlib import resources

    return Path(str(resources.files("sst_cli.data.weights").joinpath(f"{BUNDLED}_x{scale}.safetensors")))
