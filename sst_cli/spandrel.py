"""sst's networks in spandrel, the loader of ComfyUI, chaiNNer and the AUTOMATIC1111 web UI (the [spandrel] extra).

    import spandrel, sst_cli.spandrel
    sst_cli.spandrel.install()                                              # once per process
    sr = spandrel.ModelLoader().load_from_file("SSTLarge_Plus_DF2K_X4.pth")  # an ImageModelDescriptor
    y = sr(x)                                      # (1, 3, H, W) in [0, 1] -> (1, 3, 4H, 4W), clamped

``install()`` adds one spandrel architecture per architecture sst builds (``sst_cli.model.archs.ARCHS``: SST,
ESC-RIB), detected by sst's own detection and built as ``sst upscale`` decides the network
(``sst_cli.model.identify``): the config stored in the file, else its official file name, else the tensors.
Spandrel hands an architecture only the state dict, so ``install()`` also makes
``ModelLoader.load_state_dict_from_file`` note which file a state dict came from (a ``dict`` that carries
its path). A state dict without its file (``load_from_state_dict``, as ComfyUI's own loader calls it) whose
tensors fit both a base variant and its "+" twin (they differ only in window sizes, which RIB weights do not
record) is refused in one sentence, as sst refuses it: :func:`load` takes the file and, where its name is
not official, the variant.

The descriptor states what sst's network does: purpose SR, 3 channels in and out, no size requirement (the
network pads to its windows itself, so any size gives sst's untiled output), tiling supported (ESC-RIB:
discouraged, its dynamic kernels read the whole image), fp16 and bf16 supported (``sst upscale --dtype``).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

try:
    import spandrel
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError(f"sst_cli.spandrel needs spandrel: pip install 'sst-cli[spandrel]' ({exc}).") from exc
from spandrel import Architecture, ImageModelDescriptor, ModelTiling, SizeRequirements
from torch import nn

from .errors import SSTError
from .model import archs
from .model.identify import Network, describe_network, detect_network, identify, shape_twins
from .model.loading import model_from_checkpoint
from .model.registry import official_file
from .model.weights import Checkpoint, load_checkpoint

BACKEND = "sdpa"  # PyTorch's SDPA: runs on every device and dtype spandrel may move the model to


class FileStateDict(dict):
    """A state dict that remembers the file it was read from, so sst can decide the network as it does for
    the file (stored config, official file name)."""

    def __init__(self, state_dict: dict[str, Any], path: str) -> None:
        super().__init__(state_dict)
        self.path = path


class SSTArchitecture(Architecture[nn.Module]):
    """One sst architecture (an ``archs.Arch``) as a spandrel ``Architecture``."""

    def __init__(self, arch: archs.Arch) -> None:
        super().__init__(id=arch.type, name=arch.label, detect=functools.partial(_detects, arch))
        self.arch = arch

    def load(self, state_dict: dict[str, Any]) -> ImageModelDescriptor[nn.Module]:
        path = getattr(state_dict, "path", None)
        # Read by ModelLoader from a file: sst reads the same file and decides as it does for it.
        ckpt = load_checkpoint(path) if path is not None else Checkpoint(dict(state_dict), "a state dict without its file")
        return describe(*_built(ckpt), self)


def _detects(arch: archs.Arch, state_dict: dict[str, Any]) -> bool:
    """Whether ``state_dict`` is one of ``arch``'s. Spandrel asks every architecture about every file it loads, so
    a foreign state dict that merely shares a few key names is a no, never an exception."""
    try:
        return arch.detect(state_dict) is not None
    except (KeyError, IndexError, AttributeError, TypeError, ValueError):
        return False


def _built(ckpt: Checkpoint, model: str | None = None) -> tuple[nn.Module, Network]:
    """The network ``ckpt`` holds, loaded; SSTError where sst cannot tell which (a base and its "+" twin)."""
    if model is None and not ckpt.network_g and official_file(ckpt.path) is None:
        shapes = detect_network(ckpt.state_dict)
        twins = shape_twins(shapes)
        if len(twins) > 1:  # said for spandrel's callers: sst's own message names --model
            raise SSTError(f"{ckpt.path} holds {describe_network(shapes)}, which have the same tensors and differ "
                           "only in window sizes, and nothing says which; load the file under its official name, or "
                           f"name the variant ({' or '.join(v.name for v in twins)}) with "
                           "sst_cli.spandrel.load(path, model=...) or ComfyUI's node Load SST Upscale Model.")
    network = identify(ckpt, model)
    net = model_from_checkpoint(ckpt, network_g=network.network_g).set_backend(BACKEND).eval()
    return net, network


def describe(net: nn.Module, network: Network, architecture: SSTArchitecture) -> ImageModelDescriptor[nn.Module]:
    """The spandrel descriptor of a loaded sst network (see the module's docstring for what it states)."""
    cost = archs.cost_of(net)
    assert cost is not None  # every network sst builds has a cost model
    return ImageModelDescriptor(
        net, net.state_dict(), architecture, purpose="SR",
        tags=[network.name or describe_network(network.network_g)],
        supports_half=True, supports_bfloat16=True,
        scale=net.scale, input_channels=3, output_channels=3,
        size_requirements=SizeRequirements(),  # any size: the network pads to its windows itself
        tiling=ModelTiling.SUPPORTED if cost.receptive_field is not None else ModelTiling.DISCOURAGED,
    )


def architectures() -> list[SSTArchitecture]:
    """A spandrel architecture for each architecture sst builds."""
    return [SSTArchitecture(arch) for arch in archs.ARCHS.values()]


def install(registry: spandrel.ArchRegistry | None = None) -> list[spandrel.ArchSupport]:
    """Register sst's architectures in ``registry`` (default: spandrel's ``MAIN_REGISTRY``; after spandrel's own,
    none of which takes an sst state dict) and make ``ModelLoader`` note which file a state dict came from.
    Idempotent: returns what was added (nothing on a second call)."""
    registry = spandrel.MAIN_REGISTRY if registry is None else registry
    added = registry.add(*map(spandrel.ArchSupport.from_architecture, architectures()), ignore_duplicates=True)
    loader = spandrel.ModelLoader
    if not getattr(loader.load_state_dict_from_file, "_sst_notes_path", False):
        loader.load_state_dict_from_file = _noting_path(loader.load_state_dict_from_file)  # type: ignore[method-assign]
    return added


def _noting_path(read: Any) -> Any:
    @functools.wraps(read)
    def load_state_dict_from_file(self: spandrel.ModelLoader, path: str | Path) -> dict[str, Any]:
        return FileStateDict(read(self, path), str(path))

    load_state_dict_from_file._sst_notes_path = True  # type: ignore[attr-defined]
    return load_state_dict_from_file


def load(path: str | Path, model: str | None = None, device: str | None = None) -> ImageModelDescriptor[nn.Module]:
    """The spandrel descriptor of the weights file ``path``, the network decided as ``sst upscale --weights
    path [--model model]`` decides it (``model``: a variant name, for files whose name is not official)."""
    net, network = _built(load_checkpoint(path), model)
    descriptor = describe(net, network, SSTArchitecture(archs.arch_of(network.network_g)))
    return descriptor.to(device) if device else descriptor
