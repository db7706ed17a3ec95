"""Two CUDA GPUs that compute on the CPU and are as strict about devices as real ones.

``with fake_gpus():`` makes ``torch.cuda`` report two devices, and tensors put on ``cuda:0`` / ``cuda:1``
become :class:`GpuTensor`: a wrapper subclass (like FakeTensor, but with real CPU data inside) whose
``.device`` says ``cuda:N``. Every aten op goes through one dispatch mode that applies PyTorch's device
rules (those of ``torch/_subclasses/fake_tensor.py``, ``_find_common_device``) and raises
:class:`DeviceMixing` where a real GPU would fail, or would move data behind the caller's back:

- an op whose tensor arguments sit on two devices (``cuda:0`` + ``cpu``, ``cuda:0`` + ``cuda:1``) fails;
  the one exception PyTorch makes, a 0-dim CPU tensor used as a scalar, is allowed;
- an index tensor on another device (``cuda_tensor[cpu_index]``) fails too: PyTorch accepts it but copies
  the index to the GPU and waits, the hidden transfer these tests exist to catch;
- explicit moves (``.to``, ``.cuda()``, ``.cpu()``, ``copy_``, ``.item()``) are allowed, as on a GPU;
- a tensor on the GPU cannot become a NumPy array without ``.cpu()`` (PyTorch's own check, kept).

Results are those of the CPU kernels, so the numbers equal a CPU run's. Kernel availability (which SDPA
kernel, FlashAttention) is not modelled here. Known leniencies: no pinned memory (the DataLoader sees no
accelerator and skips pinning) and ``torch.save`` writes GPU tensors as CPU ones (every load in sst uses
``map_location="cpu"``, which gives the same result). Everything runs in this thread: backward runs with
autograd's multithreading off, since the engine has no device threads for a CPU build's CUDA.

Autograd's C++ side builds some tensors from another tensor's options (AccumulateGrad's grad with its
parameter's strides, zeros for an output that got no gradient), and the options of a GpuTensor say CPU:
a tensor the engine itself asks for on the CPU during a backward from a GPU loss is therefore made on
that GPU, as the real options would have said. Python code (custom backward functions, hooks) gets no
such help: a CPU tensor it makes is a CPU tensor. The engine's own check that each gradient sits on its
input's device is not modelled (it compares C++ devices); a forward that mixed devices fails first.

Python subprocesses a test starts (`sst profile`'s workers) get the same two GPUs with
:func:`in_subprocesses`, through ``tests/kernel_packages/sitecustomize.py``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

aten = torch.ops.aten
N_GPUS = 2
GPU_NAME = "Fake GPU (computes on the CPU)"
_FREE, _TOTAL = 8 << 30, 16 << 30


class DeviceMixing(RuntimeError):
    """An op received tensors on two devices, or would move data implicitly."""


# Ops that move data between devices on purpose: their arguments may sit on different devices.
_EXPLICIT_MOVES = {aten._to_copy.default, aten.copy_.default, aten._foreach_copy_.default, aten.lift_fresh.default}
# Ops that take index tensors; PyTorch moves a CPU index to the GPU silently, we refuse it.
_INDEXING = {aten.index.Tensor, aten.index_put_.default, aten.index_put.default, aten._index_put_impl_.default}


class GpuTensor(torch.Tensor):
    """A tensor that says it is on ``cuda:N`` and keeps its data in ``elem``, a plain CPU tensor.

    Only Python sees ``cuda:N`` (the ``device`` property): to PyTorch's C++ side it is a CPU tensor, so
    its device guards and the autograd engine need no CUDA, while every op still comes to
    ``__torch_dispatch__``, where the device rules are applied to what Python code asked for.
    """

    elem: torch.Tensor
    fake_device: torch.device
    __torch_function__ = torch._C._disabled_torch_function_impl

    @staticmethod
    def __new__(cls, elem: torch.Tensor, device: torch.device) -> GpuTensor:
        assert type(elem) is torch.Tensor and elem.device.type == "cpu" and device.type == "cuda"
        r = torch.Tensor._make_wrapper_subclass(cls, elem.shape, strides=elem.stride(), storage_offset=elem.storage_offset(),
                                                dtype=elem.dtype, layout=elem.layout, device=elem.device,
                                                requires_grad=elem.requires_grad)
        r.elem = elem
        r.fake_device = device
        return r

    @property  # type: ignore[override]
    def device(self) -> torch.device:
        return self.fake_device

    @property  # type: ignore[override]
    def is_cuda(self) -> bool:
        return True

    @property  # type: ignore[override]
    def is_cpu(self) -> bool:
        return False

    def get_device(self) -> int:
        return int(self.fake_device.index)

    def __repr__(self) -> str:  # noqa: D105
        return f"GpuTensor({self.elem!r}, device='{self.device}')"

    def __reduce_ex__(self, protocol: Any) -> Any:
        # torch.save: written as the CPU tensor it holds (sst loads with map_location="cpu").
        return self.elem.__reduce_ex__(protocol)

    def __deepcopy__(self, memo: dict) -> GpuTensor:
        out = GpuTensor(self.elem.clone(), self.fake_device)
        out.requires_grad_(self.requires_grad)
        if getattr(self, "_is_param", False):
            out._is_param = True
        memo[id(self)] = out
        return out

    @classmethod
    def __torch_dispatch__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        return _run(func, args, kwargs or {})


def _device_text(t: torch.Tensor) -> str:
    return str(t.device)


def _common_device(func: Any, tensors: list[torch.Tensor]) -> torch.device | None:
    """The device the op runs on, by fake_tensor.py's rule: one device for all, 0-dim CPU tensors aside."""
    common: torch.device | None = None
    scalar_only = True
    for t in tensors:
        cpu_scalar = t.device.type == "cpu" and t.dim() == 0
        if common is None:
            common, scalar_only = t.device, cpu_scalar
        elif t.device == common:
            scalar_only = scalar_only and cpu_scalar
        elif cpu_scalar:
            continue
        elif scalar_only:
            common, scalar_only = t.device, False
        else:
            raise DeviceMixing(f"{func} got tensors on two devices, {common} and {t.device} "
                               "(Expected all tensors to be on the same device).")
    return common


def _normalise(device: Any) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", _state.current)
    if dev.type == "cuda" and not 0 <= dev.index < N_GPUS:
        raise RuntimeError(f"CUDA error: invalid device ordinal ({dev} of {N_GPUS} fake GPUs)")
    return dev


def _run(func: Any, args: Any, kwargs: dict) -> Any:
    flat, _ = tree_flatten((args, kwargs))
    tensors = [t for t in flat if isinstance(t, torch.Tensor)]
    if func in _INDEXING and tensors:
        _check_indices(func, tensors[0].device, tensors[1:])
    if func in _EXPLICIT_MOVES:
        common = tensors[0].device if tensors else None
    else:
        common = _common_device(func, tensors)
    out_device = common or torch.device("cpu")
    if kwargs.get("device") is not None:
        out_device = _normalise(kwargs["device"])
        if out_device.type == "cpu" and _state.backward_device is not None and _from_autograd_engine():
            out_device = common if common is not None and common.type == "cuda" else _state.backward_device
        kwargs = {**kwargs, "device": torch.device("cpu")}
    if kwargs.get("pin_memory"):
        kwargs = {**kwargs, "pin_memory": False}
    originals = {id(t.elem): t for t in tensors if isinstance(t, GpuTensor)}
    out = func(*tree_map(_unwrap, args), **tree_map(_unwrap, kwargs))

    def wrap(x: Any) -> Any:
        if not isinstance(x, torch.Tensor):
            return x
        if id(x) in originals:  # an in-place op or out= returned its argument
            return originals[id(x)]
        if out_device.type != "cuda":
            return x
        # Never an inference tensor: autograd's view tracking above this dispatch sets a view's version
        # counter, which an inference tensor refuses (a real view of a normal tensor is a normal tensor).
        with torch.inference_mode(False):
            return GpuTensor(x, out_device)

    return tree_map(wrap, out)


# Frames between the C++ engine's dispatch and our handler: dynamo's disable wrappers and this module.
_WRAPPER_FILES = (__file__, "torch/_compile.py", "torch/_dynamo/")


def _from_autograd_engine() -> bool:
    """Whether the op being dispatched comes from autograd's C++ code (a derivative formula,
    AccumulateGrad, the engine) rather than from Python: the nearest Python frame is the engine's entry."""
    f: Any = sys._getframe(1)
    while f is not None and any(w in f.f_code.co_filename for w in _WRAPPER_FILES):
        f = f.f_back
    return f is not None and f.f_code.co_name == "_engine_run_backward"


def _unwrap(x: Any) -> Any:
    return x.elem if isinstance(x, GpuTensor) else x


class _Dispatch(TorchDispatchMode):
    """Sees every aten op, including factories given ``device="cuda"`` that no GpuTensor reaches."""

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        return _run(func, args, kwargs or {})


_CREATE_FROM_DATA = {torch.tensor, torch.as_tensor, torch.asarray, torch.Tensor.new_tensor}


_SUBSCRIPTS = {torch.Tensor.__getitem__, torch.Tensor.__setitem__}
_BACKWARDS = {torch.Tensor.backward, torch.autograd.backward, torch.autograd.grad}


def _check_indices(func: Any, target: torch.device, indices: Any) -> None:
    for t in tree_flatten(indices)[0]:
        if isinstance(t, torch.Tensor) and t.device != target and not (t.device.type == "cpu" and t.dim() == 0):
            raise DeviceMixing(f"{func} indexes a tensor on {target} with an index on {t.device}: PyTorch "
                               "would copy the index over and wait (an implicit transfer).")


class _Functions(TorchFunctionMode):
    """What happens above aten's dispatch: ``torch.tensor(data, device="cuda")`` copies to the device
    outside it (made a ``.to`` here), and ``x[index]`` moves its index tensors before dispatching."""

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func in _SUBSCRIPTS:
            _check_indices(func, args[0].device, args[1])
        if func in _BACKWARDS:
            return _backward(func, args, kwargs)
        if func is torch.Tensor.cuda:  # its C++ side opens a CUDA device guard: the same as .to()
            device = args[1] if len(args) > 1 else kwargs.get("device")
            return args[0].to(_normalise("cuda" if device is None else torch.device("cuda", device) if isinstance(device, int) else device),
                              non_blocking=kwargs.get("non_blocking", False))
        if func is torch.Tensor.cpu and isinstance(args[0], GpuTensor) or func is torch.Tensor.to:
            return _move(args[0], func is torch.Tensor.cpu, args[1:], kwargs)
        if func is torch.Tensor.numpy and isinstance(args[0], GpuTensor):
            raise TypeError(f"can't convert {args[0].device} device type tensor to numpy. Use Tensor.cpu() to copy "
                            "the tensor to host memory first.")
        device = kwargs.get("device")
        if func in _CREATE_FROM_DATA and device is not None and torch.device(device).type == "cuda":
            return func(*args, **{**kwargs, "device": "cpu"}).to(_normalise(device))
        return func(*args, **kwargs)


def _backward(func: Any, args: Any, kwargs: dict) -> Any:
    """Run a backward pass with its loss's device known to :func:`_run` (see the module docstring)."""
    roots = args[0] if args else kwargs.get("tensors", kwargs.get("outputs"))
    root = next(t for t in tree_flatten(roots)[0] if isinstance(t, torch.Tensor))
    outer, _state.backward_device = _state.backward_device, root.device if root.device.type == "cuda" else None
    try:
        return func(*args, **kwargs)
    finally:
        _state.backward_device = outer


def _move(t: torch.Tensor, cpu: bool, args: Any, kwargs: dict) -> torch.Tensor:
    """``t.to(...)`` / ``t.cpu()``: C++ takes a GpuTensor for a CPU tensor, so it would return ``t`` itself
    for ``.to("cpu")``, and it asks CUDA for the current device of a bare ``"cuda"``; decide here from the
    device Python sees, as PyTorch does from the real one."""
    copy = kwargs.pop("copy", False)
    if cpu:
        device, dtype, non_blocking, fmt = torch.device("cpu"), None, kwargs.get("non_blocking", False), None
    elif args and isinstance(args[0], torch.Tensor):
        device, dtype, non_blocking, fmt = args[0].device, args[0].dtype, bool(args[1:2] and args[1]), None
    else:
        device, dtype, non_blocking, fmt = torch._C._nn._parse_to(*args, **kwargs)
    device = t.device if device is None else _normalise(device)
    dtype = t.dtype if dtype is None else dtype
    if device == t.device and dtype == t.dtype and not copy and fmt in (None, torch.preserve_format):
        return t
    extra = {} if fmt is None else {"memory_format": fmt}
    return torch.ops.aten._to_copy.default(t, dtype=dtype, device=device, non_blocking=non_blocking, **extra)


# ------------------------------------------------------------------------------------------ torch.cuda
# current: torch.cuda.current_device(); backward_device: the loss's GPU while a backward pass runs.
_state = SimpleNamespace(current=0, backward_device=None)


class _Event:
    """torch.cuda.Event with wall-clock timing (the ops run synchronously on the CPU)."""

    def __init__(self, enable_timing: bool = False) -> None:
        self.t: float | None = None

    def record(self, stream: Any = None) -> None:
        self.t = time.perf_counter()

    def synchronize(self) -> None:
        pass

    def elapsed_time(self, end: _Event) -> float:
        assert self.t is not None and end.t is not None, "Event.elapsed_time before record()"
        return (end.t - self.t) * 1000


def _index(device: Any = None) -> int:
    if device is None:
        return _state.current
    if isinstance(device, int):
        dev = torch.device("cuda", device)
    else:
        dev = torch.device(device)
    assert dev.type == "cuda", f"torch.cuda was asked about {dev}"
    return _normalise(dev).index


def _set_device(device: Any) -> None:
    _state.current = _index(device)


def _checked(result: Any) -> Any:
    """A torch.cuda query that checks its device argument and returns ``result``."""

    def query(device: Any = None) -> Any:
        _index(device)
        return result

    return query


def _properties(device: Any = None) -> SimpleNamespace:
    _index(device)
    return SimpleNamespace(name=GPU_NAME, major=9, minor=0, total_memory=_TOTAL, multi_processor_count=132)


_CUDA_PATCHES: dict[str, Any] = {
    "is_available": lambda: True,
    "device_count": lambda: N_GPUS,
    "_lazy_init": lambda: None,
    "is_initialized": lambda: True,
    "current_device": lambda: _state.current,
    "set_device": _set_device,
    "synchronize": _checked(None),
    "get_device_name": lambda device=None: _properties(device).name,
    "get_device_properties": _properties,
    "get_device_capability": lambda device=None: (_properties(device).major, 0),
    "is_bf16_supported": lambda including_emulation=True: True,
    "mem_get_info": _checked((_FREE, _TOTAL)),
    "empty_cache": lambda: None,
    "max_memory_allocated": _checked(0),
    "max_memory_reserved": _checked(0),
    "memory_allocated": _checked(0),
    "reset_peak_memory_stats": _checked(None),
    "manual_seed": lambda seed: None,
    "manual_seed_all": lambda seed: None,
    "get_rng_state_all": lambda: [torch.get_rng_state() for _ in range(N_GPUS)],
    "set_rng_state_all": lambda states: None,
    "Event": _Event,
}


# ------------------------------------------------------------------------------------------ subprocesses
# "1": tests/kernel_packages/sitecustomize.py runs the whole subprocess under fake_gpus() (for_this_process).
SUBPROCESS_ENV = "SST_TEST_FAKE_GPUS"
_SITE = Path(__file__).resolve().parent / "kernel_packages"  # holds that sitecustomize.py
_for_good = contextlib.ExitStack()


def in_subprocesses(monkeypatch: Any) -> None:
    """Python subprocesses the test starts (`sst profile`'s workers) run on the same two fake GPUs:
    the variable and that folder (with tests/) are set for them, undone by ``monkeypatch``."""
    monkeypatch.setenv(SUBPROCESS_ENV, "1")
    paths = [str(_SITE), str(_SITE.parent), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))


def for_this_process() -> None:
    """:func:`fake_gpus` entered until the process ends (a subprocess's start-up)."""
    _for_good.enter_context(fake_gpus())


@contextlib.contextmanager
def fake_gpus() -> Iterator[None]:
    """Two fake CUDA GPUs for the duration of the block (see the module docstring)."""
    _state.current, _state.backward_device = 0, None
    with contextlib.ExitStack() as stack:
        for name, value in _CUDA_PATCHES.items():
            stack.enter_context(mock.patch.object(torch.cuda, name, value))
        # Module.to() would otherwise keep each Parameter object and swap its .data for a GpuTensor, which
        # Python would then see as a CPU tensor; with this set it makes new Parameters, as for any subclass.
        overwrite = torch.__future__.get_overwrite_module_params_on_conversion()
        torch.__future__.set_overwrite_module_params_on_conversion(True)
        stack.callback(torch.__future__.set_overwrite_module_params_on_conversion, overwrite)
        stack.enter_context(torch.autograd.set_multithreading_enabled(False))
        stack.enter_context(_Functions())
        stack.enter_context(_Dispatch())
        yield
