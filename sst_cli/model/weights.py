"""Reading and writing weights files (which network a file holds: ``identify.py``; loading it: ``loading.py``).

Reads BasicSR ``.pth`` dicts (``params_ema`` preferred, then ``params``, or a bare state dict, with any
``module.`` prefix stripped) through ``torch.load(weights_only=True)``, plain ``.safetensors`` files, and
our own formats: safetensors whose metadata holds the network config as JSON, and BasicSR ``.pth``
exports with the config beside ``params_ema``. A file that is not a checkpoint at all (an HTML page, a
JSON answer, a Git LFS pointer: what a failed download leaves) is named for what it is.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import SSTError
from ..io.files import atomic_write
from .registry import BUNDLED

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
    return dict(cfg) if isinstance(cfg, dict) and cfg else None


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


def _state_dict(model: nn.Module, dtype: torch.dtype | None = None) -> dict[str, Tensor]:
    return {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous()
            for k, v in model.state_dict().items()}


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, meta: dict[str, Any] | None = None,
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


def save_basicsr(path: str | os.PathLike[str], model: nn.Module) -> Path:
    """Write a BasicSR ``.pth`` (``params_ema``) atomically, with the config beside it as plain data
    (``network_g``), so sst knows the window sizes and BasicSR, which reads only ``params_ema``, is unaffected."""
    sd = _state_dict(model)
    return atomic_write(Path(path), lambda tmp: torch.save({"params_ema": sd, "network_g": dict(model.config)}, tmp))


def bundled_path(scale: int) -> Path:
    """The bundled sst-tiny weights at ``scale``, shipped inside the package."""
    from importlib import resources

    return Path(str(resources.files("sst_cli.data.weights").joinpath(f"{BUNDLED}_x{scale}.safetensors")))
