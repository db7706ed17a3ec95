"""The SST network: window attention with RIB position vectors, CLA gate, cyclic windows, ConvFFN.

Written from ``shared/design/ARCHITECTURE.md``. Module and parameter names reproduce the official
state-dict layout exactly, so published BasicSR checkpoints load with ``strict=True``. Its keywords are
``SSTConfig``'s (config.py). The building blocks here (window attention, LayerNorm, fused convolutions,
upsamplers) are shared with ESC-RIB, as the official code shares its ``arch_utils``.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ....runtime import autocast_off
from ...attention import attend, position_dtype
from .config import SSTConfig


# ------------------------------------------------------------------------------------------- helpers
def pad_to_multiple(x: Tensor, window: int) -> Tensor:
    """Pad (B, C, H, W) on the bottom/right to multiples of ``window``.

    The official code uses one reflect pad, which only works while the pad is smaller than the side.
    Where it works we do exactly that. Otherwise each axis is mirror-tiled (reflected repeatedly),
    which equals the official pad wherever that one runs and extends any smaller input smoothly; a
    1-pixel side has nothing to mirror and is replicated (the other axis is still mirrored).
    """
    pad_h = (window - x.shape[-2] % window) % window
    pad_w = (window - x.shape[-1] % window) % window
    if pad_h < x.shape[-2] and pad_w < x.shape[-1]:  # the official case: one reflect pad
        return F.pad(x, (0, pad_w, 0, pad_h), mode="reflect") if pad_h or pad_w else x
    return _mirror_pad(_mirror_pad(x, pad_h, -2), pad_w, -1)


def _mirror_pad(x: Tensor, pad: int, dim: int) -> Tensor:
    """Pad ``pad`` entries after the end of ``dim`` (-2 or -1) by repeated reflection."""
    while pad:
        mode = "replicate" if x.shape[dim] == 1 else "reflect"
        step = pad if mode == "replicate" else min(pad, x.shape[dim] - 1)
        x = F.pad(x, (0, step, 0, 0) if dim == -1 else (0, 0, 0, step), mode=mode)
        pad -= step
    return x


# ------------------------------------------------------------------------------- fused CPU inference
# At inference on the CPU, oneDNN runs a convolution together with the GELU or sigmoid after it, or the
# residual add after it, in one pass over the activation (PyTorch's own CPU fusion ops, which
# torch.compile emits; callable eagerly). Each separate elementwise pass costs about as much as the
# small-channel convolution itself, so this halves the time of the FFN and gate
# (benchmarks/RESULTS.md#vs-official).
# Anywhere else (gradients, GPUs, other dtypes, builds without oneDNN) the same arithmetic runs as
# separate ops.
_ALGORITHM = {"gelu": "none", "sigmoid": "", "none": ""}  # oneDNN's name for exact (erf) GELU is "none"


@functools.cache
def _fusion_works(dtype: torch.dtype) -> bool:
    """Whether this PyTorch build runs the oneDNN fusion ops for ``dtype`` (tried once on tiny tensors)."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        x = torch.ones(1, 2, 3, 3, dtype=dtype).contiguous(memory_format=torch.channels_last)
        w = torch.ones(2, 2, 1, 1, dtype=dtype)
        with torch.no_grad():
            y = torch.ops.mkldnn._convolution_pointwise(x, w, None, [0, 0], [1, 1], [1, 1], 1, "gelu", [], "none")
            z = torch.ops.mkldnn._convolution_pointwise.binary(x, x, w, None, [0, 0], [1, 1], [1, 1], 1, "add", 1.0,
                                                               None, [], None)
    except (RuntimeError, AttributeError, NotImplementedError):
        return False
    return bool(torch.allclose(y.float(), F.gelu(torch.full_like(y, 2.0, dtype=torch.float32)))
                and torch.allclose(z.float(), torch.full_like(z, 3.0, dtype=torch.float32)))


def fused(x: Tensor) -> bool:
    """True where :func:`conv` runs as a single oneDNN kernel for ``x``."""
    return (x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16) and not torch.is_grad_enabled()
            and torch.backends.mkldnn.enabled and _fusion_works(x.dtype))


def conv(x: Tensor, m: nn.Conv2d, act: str = "none", add: Tensor | None = None) -> Tensor:
    """``m(x)`` followed by ``act`` ("gelu", "sigmoid" or "none"), or plus ``add``: one kernel where fused."""
    if fused(x):
        if add is not None:
            return torch.ops.mkldnn._convolution_pointwise.binary(
                x, add, m.weight, m.bias, list(m.padding), list(m.stride), list(m.dilation), m.groups, "add", 1.0,
                None, [], None)
        return torch.ops.mkldnn._convolution_pointwise(
            x, m.weight, m.bias, list(m.padding), list(m.stride), list(m.dilation), m.groups, act, [], _ALGORITHM[act])
    y = m(x)
    if act == "gelu":
        y = F.gelu(y)
    elif act == "sigmoid":
        y = torch.sigmoid(y)
    return y if add is None else add + y


def linear(tokens: Tensor, m: nn.Conv2d, start: int = 0, stop: int | None = None) -> Tensor:
    """Output channels ``start:stop`` of the 1x1 convolution ``m`` applied to (..., C) tokens. A plain
    matrix product: oneDNN's was ~25% faster here but held ~20 MB more peak RSS (sst-light, 256x256).
    On 2-D input with the bias as ``addmm``'s first term: F.linear with a bias on 3-D tokens took a path
    5x slower on the CPU (12 ms against 2.5 ms for 100k tokens x 32 channels, one thread)."""
    weight = m.weight.flatten(1)[start:stop]
    flat = tokens.reshape(-1, tokens.shape[-1])
    out = flat @ weight.t() if m.bias is None else torch.addmm(m.bias[start:stop], flat, weight.t())
    return out.view(*tokens.shape[:-1], weight.shape[0])


def rib_features(window: int, n_freqs: int, device: torch.device | None = None) -> Tensor:
    """Fourier features of the normalised coordinates of a window's tokens: (w*w, 2 + 4F), float32."""
    centres = (torch.arange(window, dtype=torch.float32, device=device) + 0.5) * 2 / window - 1
    v, u = torch.meshgrid(centres, centres, indexing="ij")  # v from the row, u from the column
    u, v = u.reshape(-1, 1), v.reshape(-1, 1)  # row-major token order
    freqs = 2.0 ** torch.arange(n_freqs, dtype=torch.float32, device=device)  # (F,)
    su, sv = u * freqs, v * freqs  # (N, F)
    # per frequency: [sin u, sin v, cos u, cos v]
    bands = torch.stack([su.sin(), sv.sin(), su.cos(), sv.cos()], dim=-1).reshape(u.shape[0], -1)
    return torch.cat([u, v, bands], dim=-1)


def relative_position_index(window: int, device: torch.device | None = None) -> Tensor:
    """Swin-style index into a (2w-1)^2 table for every (query, key) pair of a window: (N, N), built on
    ``device``. int32 rather than Swin's int64: half the memory (w=96: 340 MB), any table size fits."""
    ar = torch.arange(window, dtype=torch.int32, device=device)
    coords = torch.stack(torch.meshgrid(ar, ar, indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)  # (N, N, 2)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of an NCHW tensor (eps 1e-6)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W)
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)  # not x.shape: ONNX wants it constant
        return x.permute(0, 3, 1, 2)


class ConvFFN(nn.Module):
    """1x1 expand, GELU, residual 3x3 depthwise conv with GELU, 1x1 project."""

    def __init__(self, dim: int, exp_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * exp_ratio)
        self.proj = nn.Conv2d(dim, hidden, 1)
        self.dwc = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.agg = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: Tensor, residual: Tensor | None = None) -> Tensor:
        """The FFN of ``x``, plus ``residual`` when given (added inside the last convolution)."""
        h = conv(x, self.proj, "gelu")
        del x  # as in WindowAttention.forward: the normalised input is dead from here
        # In place when no gradient is wanted: one fewer hidden-size (1.5-2x C) activation alive.
        h = h + conv(h, self.dwc, "gelu") if torch.is_grad_enabled() else h.add_(conv(h, self.dwc, "gelu"))
        return conv(h, self.agg, add=residual)


# ------------------------------------------------------------------------------------------ attention
class WindowAttention(nn.Module):
    """Non-overlapping w x w window self-attention with a positional bias and the CLA gate.

    bias="rib": low-rank position vectors from a coordinate MLP, concatenated to q and k so the whole
    logit is one dot product (any fused kernel runs it). "rpb": a learned (2w-1)^2 table per head added
    to the logits (ablation). "none": no positional term.
    """

    def __init__(
        self, dim: int, window: int, heads: int, rank: int, bias: str = "rib",
        rib_hidden_dim: int = 32, rib_n_freqs: int = 10,
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by {heads} heads")
        self.dim, self.window, self.heads, self.rank, self.bias = dim, window, heads, rank, bias
        self.head_dim = dim // heads
        self.n_freqs = rib_n_freqs
        self.backend = "sdpa"  # set by SST.set_backend
        if bias == "rib":
            self.to_hidden = nn.Parameter(torch.empty(2 + 4 * rib_n_freqs, rib_hidden_dim))
            self.hidden_b = nn.Parameter(torch.zeros(1, rib_hidden_dim))
            self.to_q = nn.Parameter(torch.empty(heads, rib_hidden_dim, rank))
            self.to_k = nn.Parameter(torch.empty(heads, rib_hidden_dim, rank))
        elif bias == "rpb":
            self.rpb_table = nn.Parameter(torch.empty((2 * window - 1) ** 2, heads))
        self.to_qkv = nn.Conv2d(dim, 3 * dim, 1)
        self.to_out = nn.Conv2d(dim, dim, 1)
        self.gate = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1, groups=dim), nn.Conv2d(dim, dim, 1))
        self._cache: dict[tuple, Tensor | tuple[Tensor, Tensor]] = {}
        # RPB's (N, N) index, built once per device like the official code's buffer, but kept out of
        # buffers(): no state-dict key (official files load strictly), no DDP broadcast or EMA copy of it.
        self._rpb_index: Tensor | None = None

    # RIB vectors and the RPB bias are cached on accelerators (they save several small kernel launches per layer). On
    # CPU only small ones are kept: recomputing one layer's costs ~0.5 ms, which matters for the many
    # small tiles of a large image, while keeping all of sst-light's (w=64 included) costs ~15 MB of
    # peak RSS (benchmarks/RESULTS.md#vs-official). ``cache_on_cpu`` keeps every size.
    cache_on_cpu = False
    cpu_cache_bytes = 1 << 20  # pos_q and pos_k together (or the RPB bias), float32

    # -- positional terms -------------------------------------------------------------------------
    def _cacheable(self) -> bool:
        n = self.window**2
        nbytes = self.heads * n * (n if self.bias == "rpb" else 2 * self.rank) * 4  # the RPB bias or pos_q + pos_k
        if self.to_qkv.weight.device.type == "cpu" and not (self.cache_on_cpu or nbytes <= self.cpu_cache_bytes):
            return False
        # Cached tensors carry no gradient, so only reuse them when no gradient is wanted.
        return not (torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters(recurse=False)))

    def _cache_key(self, device: torch.device, dtype: torch.dtype) -> tuple:
        # Parameter versions change on any in-place update (load_state_dict, optimiser steps).
        versions = tuple(p._version for p in self.parameters(recurse=False))
        return (device, dtype, versions)

    def rib_vectors(self, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """Scaled position vectors (pos_q / sqrt(r), pos_k), each (heads, N, r), computed in float32."""
        device = self.to_hidden.device
        key = self._cache_key(device, dtype)
        cacheable = self._cacheable()
        if cacheable and key in self._cache:
            return self._cache[key]  # type: ignore[return-value]
        with autocast_off(device):  # float32 really: autocast would run these products in bf16
            feats = rib_features(self.window, self.n_freqs, device)  # (N, 2+4F)
            h = torch.relu(feats @ self.to_hidden.float() + self.hidden_b.float())  # (N, Dh)
            pos_q = torch.einsum("nd,hdr->hnr", h, self.to_q.float()) / math.sqrt(self.rank)
            pos_k = torch.einsum("nd,hdr->hnr", h, self.to_k.float())
        out = (pos_q.to(dtype), pos_k.to(dtype))
        if cacheable:
            self._cache = {key: out}
        return out

    def rpb_bias(self, dtype: torch.dtype) -> Tensor:
        """The RPB logit bias (heads, N, N); cached where the RIB vectors would be (no gradient wanted)."""
        device = self.rpb_table.device
        key = self._cache_key(device, dtype)
        cacheable = self._cacheable()
        if cacheable and key in self._cache:
            return self._cache[key]  # type: ignore[return-value]
        bias = self.rpb_table[self.rpb_index(device)].permute(2, 0, 1).to(dtype)
        if cacheable:
            self._cache = {key: bias}
        return bias

    def rpb_index(self, device: torch.device) -> Tensor:
        """The relative-position index on ``device``, built there once (and again only on a new device)."""
        if self._rpb_index is None or self._rpb_index.device != device:
            self._rpb_index = None  # the old device's copy goes before the new one is built
            # A normal tensor even when first built under inference_mode (validation): training's
            # backward saves the index, which an inference tensor may not be.
            with torch.inference_mode(False):
                self._rpb_index = relative_position_index(self.window, device)
        return self._rpb_index

    # -- forward ----------------------------------------------------------------------------------
    def forward(self, x: Tensor, residual: Tensor | None = None) -> Tensor:
        """Attention of ``x`` (B, C, H, W), plus ``residual`` when given (added inside ``to_out``)."""
        b, c, h, w = x.shape
        g = conv(conv(x, self.gate[0]), self.gate[1], "sigmoid")  # CLA gate on the unpadded input
        x = pad_to_multiple(x, self.window)
        hp, wp = x.shape[-2:]
        ws, nh, d = self.window, self.heads, self.head_dim
        # One gather into window tokens, then q, k and v by matrix products on the tokens (a 1x1
        # convolution commutes with the gather): one copy of C channels instead of three. Three C-channel
        # products rather than one of 3C keep every activation a third the size, below glibc's 32 MB
        # mmap ceiling (sst-light up to 256x256 inputs), so freed memory is reused rather than unmapped
        # and faulted in again on the next layer. Viewed as heads: the kernels take the strides.
        tokens = window_partition(x, ws)  # (B*nW, N, C)
        del x  # the caller keeps no reference to its normalised input: free it now (one C-sized tensor)
        # (``view``, not ``unflatten``, whose sizes an ONNX trace would fix to the traced input's: sst export)
        q, k, v = (linear(tokens, self.to_qkv, i * c, (i + 1) * c).view(-1, ws * ws, nh, d).transpose(1, 2)
                   for i in range(3))  # each (B*nW, nh, N, d)
        del tokens
        pos_dtype = position_dtype(self.backend, q.dtype)
        rib = self.rib_vectors(pos_dtype) if self.bias == "rib" else None  # (nh, N, r) each
        bias = self.rpb_bias(pos_dtype) if self.bias == "rpb" else None  # (nh, N, N)
        out = attend(q, k, v, backend=self.backend, scale=d**-0.5, rib=rib, bias=bias,
                     q_is_scratch=not torch.is_grad_enabled())  # (B*nW, nh, N, d), may live in q's memory
        del q, k, v  # three C-channel tensors that would otherwise live on through the reverse and to_out
        y = gated_window_reverse(out, g, ws, hp, wp)
        del out, g
        return conv(y, self.to_out, add=residual)


def window_partition(x: Tensor, window: int) -> Tensor:
    """(B, C, H, W) with H, W multiples of ``window`` -> (B * nW, window * window, C), row-major tokens.

    Reads channels-last memory in contiguous runs of C (the network runs channels-last for this)."""
    b, c, h, w = x.shape
    x = x.permute(0, 2, 3, 1).view(b, h // window, window, w // window, window, c)
    return x.transpose(2, 3).reshape(-1, window * window, c)


def window_reverse(tokens: Tensor, window: int, h: int, w: int) -> Tensor:
    """Inverse of :func:`window_partition`: (B * nW, N, C) -> (B, C, H, W) in channels-last memory."""
    c = tokens.shape[-1]
    x = tokens.reshape(-1, h // window, w // window, window, window, c).transpose(2, 3)
    return x.reshape(-1, h, w, c).permute(0, 3, 1, 2)


def gated_window_reverse(out: Tensor, gate: Tensor, window: int, hp: int, wp: int) -> Tensor:
    """Attention output (B*nW, heads, N, d) back to the image, cropped to the gate's size and times the
    gate: (B, C, H, W) channels-last.

    Without padding or gradients the reverse is a strided read inside the multiplication, so the output
    is gathered back into the image in the same pass that gates it, whatever the kernel's layout.
    """
    b, c, h, w = gate.shape
    if (hp, wp) != (h, w) or torch.is_grad_enabled() or not gate.is_contiguous(memory_format=torch.channels_last):
        return window_reverse(out.transpose(1, 2).flatten(2), window, hp, wp)[:, :, :h, :w] * gate
    nh, d = out.shape[1], out.shape[3]
    grid = (b, h // window, window, w // window, window, nh, d)
    src = out.unflatten(2, (window, window)).unflatten(0, (b, h // window, w // window))  # (b, Y, X, nh, y, x, d)
    result = torch.empty_like(gate, memory_format=torch.channels_last)
    torch.mul(src.permute(0, 1, 4, 2, 5, 3, 6), gate.permute(0, 2, 3, 1).view(grid),
              out=result.permute(0, 2, 3, 1).view(grid))
    return result


class TransformerLayer(nn.Module):
    def __init__(self, dim: int, window: int, heads: int, rank: int, exp_ratio: float, **attn_kw: Any) -> None:
        super().__init__()
        self.norm_attn = LayerNorm2d(dim)
        self.attn = WindowAttention(dim, window, heads, rank, **attn_kw)
        self.norm_ffn = LayerNorm2d(dim)
        self.ffn = ConvFFN(dim, exp_ratio)

    def forward(self, x: Tensor) -> Tensor:
        # ``.forward``, not a module call: Module.__call__ holds its arguments until it returns, so the
        # normalised input (one C-channel tensor) could not be freed inside attn and ffn, which free it
        # as soon as it is used. These two submodules take no hooks.
        x = self.attn.forward(self.norm_attn(x), residual=x)  # x + attn(norm(x))
        return self.ffn.forward(self.norm_ffn(x), residual=x)


class ResidualSequential(nn.Sequential):
    """x + Sequential(x): keeps the children's official names (``0``, ``1``, ...). The last child is a
    convolution, which adds the residual itself."""

    def forward(self, x: Tensor) -> Tensor:
        *first, last = self
        h = x
        for m in first:
            h = m(h)
        return conv(h, last, add=x) if isinstance(last, nn.Conv2d) else x + last(h)


# ---------------------------------------------------------------------------------------- upsamplers
def shuffle_view(y: Tensor, scale: int) -> Tensor:
    """``pixel_shuffle`` of (B, C*s*s, H, W) as a strided view (B, C, H, s, W, s): no copy."""
    b, c, h, w = y.shape
    return y.permute(0, 2, 3, 1).view(b, h, w, c // scale**2, scale, scale).permute(0, 3, 1, 4, 2, 5)


def add_nearest(y: Tensor, x: Tensor) -> Tensor:
    """``y`` (B, C, H, s, W, s) plus ``x`` (B, C, H, W) upsampled by nearest neighbour -> (B, C, sH, sW).

    One pass, ``x`` broadcast rather than repeated; at inference it writes a contiguous result straight
    away (the pixel shuffle, the add and the layout change of the network's last step in one)."""
    b, c, h, s, w, _ = y.shape
    near = x[:, :, :, None, :, None]
    if torch.is_grad_enabled() and (y.requires_grad or x.requires_grad):
        return (y + near).reshape(b, c, h * s, w * s)
    out = torch.empty(b, c, h * s, w * s, dtype=torch.result_type(y, x), device=y.device)
    torch.add(y, near, out=out.view(b, c, h, s, w, s))
    return out


class PixelShuffleDirect(nn.Module):
    """Light variants: one 3x3 conv to 3*s^2 channels, pixel shuffle, plus the nearest-upsampled input."""

    def __init__(self, dim: int, scale: int) -> None:
        super().__init__()
        self.scale = scale
        self.up_conv = nn.Conv2d(dim, 3 * scale * scale, 3, padding=1)

    def forward(self, feat: Tensor, x: Tensor) -> Tensor:
        return add_nearest(shuffle_view(conv(feat, self.up_conv), self.scale), x)


class PixelShuffleUpsampler(nn.Module):
    """conv C->I, LeakyReLU(0.1), conv I->I*s^2, pixel shuffle, conv I->3, plus the nearest-upsampled input."""

    def __init__(self, dim: int, scale: int, intermediate_dim: int) -> None:
        super().__init__()
        self.scale = scale
        self.feature_conv = nn.Conv2d(dim, intermediate_dim, 3, padding=1)
        self.up_conv = nn.Conv2d(intermediate_dim, intermediate_dim * scale * scale, 3, padding=1)
        self.final_conv = nn.Conv2d(intermediate_dim, 3, 3, padding=1)

    def forward(self, feat: Tensor, x: Tensor) -> Tensor:
        h = F.leaky_relu(self.feature_conv(feat), 0.1)
        h = F.pixel_shuffle(self.up_conv(h), self.scale)
        y = self.final_conv(h)  # (B, 3, sH, sW)
        return add_nearest(y.view(*y.shape[:2], y.shape[2] // self.scale, self.scale, -1, self.scale), x)


# ---------------------------------------------------------------------------------------------- SST
def make_upsampler(kind: str, dim: int, scale: int, intermediate_dim: int) -> nn.Module:
    """The official upsampler ``kind`` ("pixelshuffle_direct" or "pixelshuffle"), under the name ``upsampler``."""
    if kind == "pixelshuffle_direct":
        return PixelShuffleDirect(dim, scale)
    return PixelShuffleUpsampler(dim, scale, intermediate_dim)


class RoutedAttention(nn.Module):
    """A network whose attention layers (:class:`WindowAttention`) all run through one backend."""

    def set_backend(self, backend: str) -> RoutedAttention:
        """Route every attention layer through ``backend`` (a name from sst_cli.model.attention.BACKENDS)."""
        for m in self.modules():
            if isinstance(m, WindowAttention):
                m.backend = backend
        return self

    @property
    def backend(self) -> str:
        return next(m.backend for m in self.modules() if isinstance(m, WindowAttention))


class SST(RoutedAttention):
    """SST super-resolution network. Input (B, 3, H, W) in [0, 1] -> (B, 3, sH, sW), not clamped."""

    def __init__(self, **network_g: Any) -> None:  # the official keywords (SSTConfig)
        super().__init__()
        cfg = SSTConfig.from_network_g(network_g)
        self.cfg = cfg
        self.scale = cfg.upscaling_factor
        self.window_sizes = cfg.window_sizes
        self.config = cfg.to_network_g()
        dim = cfg.dim

        self.proj = nn.Conv2d(3, dim, 3, padding=1)
        attn_kw = {"bias": cfg.bias, "rib_hidden_dim": cfg.rib_hidden_dim, "rib_n_freqs": cfg.rib_n_freqs}
        blocks: list[nn.Module] = []
        for _ in range(cfg.n_blocks):
            layers = [
                TransformerLayer(dim, w, h, r, cfg.exp_ratio, **attn_kw)
                for w, h, r in zip(cfg.window_sizes, cfg.num_heads, cfg.ranks, strict=True)
            ]
            blocks.append(ResidualSequential(*layers, nn.Conv2d(dim, dim, 3, padding=1)))
        self.body = ResidualSequential(*blocks, LayerNorm2d(dim), nn.Conv2d(dim, dim, 3, padding=1))
        self.upsampler = make_upsampler(cfg.upsampler_type, dim, self.scale, cfg.intermediate_dim)
        self.apply(_init_weights)

    def forward(self, x: Tensor) -> Tensor:
        # Channels-last inside: the LayerNorms then normalise contiguous rows, the window partitions
        # copy contiguous runs of channels and oneDNN's convolutions skip their layout reorders.
        x = x.contiguous(memory_format=torch.channels_last)
        feat = self.proj(x)
        feat = self.body(feat)  # feat + body(feat)
        return self.upsampler(feat, x).contiguous()


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, (nn.Linear, nn.Conv2d)):
        if isinstance(m, nn.Linear) or m.kernel_size == (1, 1):
            nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, WindowAttention):
        init_position_bias(m)


def init_position_bias(m: WindowAttention) -> None:
    """The official initial positional parameters: RIB's normal (std 0.05, hidden bias 0), RPB's table
    truncated normal (std 0.02). Their tensors are created empty: every network built on WindowAttention calls this."""
    if m.bias == "rib":
        for p in (m.to_hidden, m.to_q, m.to_k):
            nn.init.normal_(p, std=0.05)
        nn.init.zeros_(m.hidden_b)
    elif m.bias == "rpb":
        nn.init.trunc_normal_(m.rpb_table, std=0.02)
