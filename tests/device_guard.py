"""A test helper: the torch factory calls made without an explicit ``device=``.

Such a call puts its tensor on the CPU (or the default device) whatever device the work runs on;
on CUDA that is a wrong-device error or a hidden host-to-device copy. ``explicit_devices()`` records
them through a ``TorchFunctionMode`` while a step runs on the CPU, so CI sees what only a GPU would.
"""
from __future__ import annotations

import contextlib
import traceback
from pathlib import Path
from typing import Iterator

import torch
from torch.overrides import TorchFunctionMode

FACTORIES = frozenset({torch.arange, torch.as_tensor, torch.empty, torch.empty_strided, torch.eye, torch.full,
                       torch.linspace, torch.logspace, torch.ones, torch.rand, torch.randint, torch.randn,
                       torch.randperm, torch.range, torch.scalar_tensor, torch.tensor, torch.tril_indices,
                       torch.triu_indices, torch.zeros})
_TORCH = str(Path(torch.__file__).parent)


class DeviceLessFactories(TorchFunctionMode):
    """Records ``torch.<factory>(...)`` calls without ``device=``, each with the line that made it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inherits = func is torch.as_tensor and args and isinstance(args[0], torch.Tensor)  # keeps the data's device
        if func in FACTORIES and kwargs.get("device") is None and not inherits:
            self.calls.append(f"torch.{func.__name__} at {_caller()}")
        return func(*args, **kwargs)


def _caller() -> str:
    """``file:line`` of the innermost frame outside torch and this helper."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        if not frame.filename.startswith(_TORCH) and frame.filename != __file__:
            return f"{frame.filename}:{frame.lineno}"
    return "?"


@contextlib.contextmanager
def explicit_devices() -> Iterator[DeviceLessFactories]:
    """Fail the test when the block creates a tensor with a torch factory and no explicit device."""
    mode = DeviceLessFactories()
    with mode:
        yield mode
    assert not mode.calls, "tensors created without an explicit device:\n  " + "\n  ".join(sorted(set(mode.calls)))
