"""Which network a weights file holds: the config stored in it, else its official file name, else ``--model``,
else what the architectures' detection reads from the tensors.

The tensors alone cannot tell a "+" variant from its base (same shapes, other windows: RIB weights do not
record windows), so that case is refused rather than guessed. A bare state dict whose shapes match exactly
one registry variant (sst-xl+, sst-tiny, esc-rib) gets that variant's windows, and the answer says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import SSTError
from . import archs
from .registry import VARIANTS, Variant, get_variant, official_file
from .weights import Checkpoint


def detect_network(sd: dict[str, Any]) -> dict[str, Any]:
    """The partial official ``network_g`` the tensors imply (see :func:`sst_cli.model.archs.detect`);
    SSTError when no architecture recognises them."""
    found = archs.detect(sd)
    if found is None:
        labels = " or ".join(a.label for a in archs.ARCHS.values())
        raise SSTError(f"the weights do not look like any network sst knows ({labels}).")
    return found


def shape_twins(detected: dict[str, Any]) -> list[Variant]:
    """Registry variants whose tensors are exactly those ``detected`` describes (a base and its "+" share them)."""
    scale = archs.scale_of(detected)
    return [v for v in VARIANTS.values() if archs.fits(detected, v.network_g(scale))]


def match_variant(network_g: dict[str, Any]) -> Variant | None:
    """The registry variant that ``network_g`` builds exactly (shapes and windows), or None (a custom network,
    or keywords no network can have)."""
    try:
        cfg = archs.config_of(network_g)
    except ValueError:
        return None
    return next((v for v in VARIANTS.values()
                 if archs.arch_of(v.network).type == cfg.TYPE and archs.config_of(v.network_g(cfg.scale)) == cfg), None)


def describe_network(network_g: dict[str, Any]) -> str:
    """'sst-l+ x4', 'sst-l or sst-l+ x4' (tensors alone), or 'a custom SST (dim 8, 2 blocks) x2'."""
    found = shape_twins(network_g) if archs.unrecorded(network_g) else [v] if (v := match_variant(network_g)) else []
    name = " or ".join(v.name for v in found) or archs.describe_custom(network_g)
    return f"{name} x{archs.scale_of(network_g)}"


@dataclass(frozen=True)
class Network:
    """The network a checkpoint holds: what to build, its registry name (None: custom), and why we know."""

    network_g: dict[str, Any]
    variant: Variant | None
    basis: str  # "the config stored in it", "its official file name", "--model", "its tensor shapes"
    assumed: str = ""  # what the file did not record and was taken from the registry, in words ("" : nothing)

    @property
    def name(self) -> str | None:
        return self.variant.name if self.variant else None


def _windows_assumed(variant: Variant, scale: int, missing: list[str]) -> str:
    windows = ",".join(map(str, archs.config_of(variant.network_g(scale)).windows))
    return f"windows {windows} assumed: those of {variant.name}, the only known network with these tensors" \
        if missing else ""


def identify(ckpt: Checkpoint, model: str | None = None) -> Network:
    """Decide the network ``ckpt`` holds: the config stored in the file, else its official file name, else
    ``model`` (a registry name), else its tensors. A ``model`` that contradicts the file, or a bare state
    dict whose variant the tensors cannot tell (sst-light vs sst-light+, sst vs sst+, sst-l vs sst-l+) with
    no ``model``, is an SSTError; nothing is guessed."""
    try:
        wanted = get_variant(model) if model else None
    except KeyError as exc:
        raise SSTError(str(exc.args[0]) + ".") from None
    named = official_file(ckpt.path)
    if ckpt.network_g:
        try:
            stored = archs.config_of(ckpt.network_g).to_network_g()
        except ValueError as exc:
            raise SSTError(f"{ckpt.path} stores a network config sst cannot build: {exc}.") from None
        found = Network(stored, match_variant(stored), "the config stored in it")
        told = describe_network(found.network_g)
    elif named is not None:
        found = Network(named.variant.network_g(named.scale), named.variant, "its official file name")
        told = f"{named.variant.name} x{named.scale}"
    else:
        shapes = detect_network(ckpt.state_dict)
        twins = shape_twins(shapes)
        scale = archs.scale_of(shapes)
        missing = archs.unrecorded(shapes)
        if wanted is not None and wanted in twins:
            return Network(wanted.network_g(scale), wanted, "--model")
        if wanted is not None:
            raise SSTError(f"--model {wanted.name} contradicts {ckpt.path}, whose tensors are those of "
                           f"{describe_network(shapes)}; drop --model or pass weights of {wanted.name}.")
        if len(twins) == 1:
            return Network(twins[0].network_g(scale), twins[0], "its tensor shapes",
                           _windows_assumed(twins[0], scale, missing))
        if twins:
            choices = " or ".join(f"--model {v.name}" for v in twins)
            raise SSTError(f"{ckpt.path} holds {describe_network(shapes)}, which have the same tensors and differ "
                           f"only in window sizes, and neither the file nor its name says which; pass {choices}.")
        if missing:
            raise SSTError(f"{ckpt.path} holds {describe_network(shapes)} whose window sizes are not stored in "
                           "the file; load it from a .safetensors saved by sst, which keeps its config.")
        return Network(archs.config_of(shapes).to_network_g(), None, "its tensor shapes")  # e.g. RPB: windows recorded
    if wanted is not None and found.variant is not wanted:
        raise SSTError(f"--model {wanted.name} contradicts {ckpt.path}, which holds {told} (from {found.basis}); "
                       f"drop --model, or pass weights of {wanted.name}.")
    return found
