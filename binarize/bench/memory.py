"""Peak memory of a piece of work: the CUDA allocator's own peak, or a count of live tensor storages on the CPU.

* **CUDA**: the caching allocator's peak (:func:`torch.cuda.max_memory_allocated` after
  :func:`torch.cuda.reset_peak_memory_stats`) above what was allocated when the work started, plus the bytes of the
  work's own tensors alive at its start (parameters, gradients, optimizer state, inputs): every byte handed out to
  the work's tensors, activations and temporaries included, but not to other tensors on the device (the other
  network of a comparison).
* **CPU** (no allocator statistics): :class:`LiveTensorBytes`, a
  :class:`~torch.utils._python_dispatch.TorchDispatchMode` that sees the output of every ATen operation (forward,
  backward and optimizer step alike) and adds the size of each new storage to a running total, which a weak
  reference on the storage decrements when the storage is freed. Tensors alive before the work (parameters,
  gradients, optimizer state, inputs) are registered first. The peak of the running total is the peak of live
  tensor bytes. Memory a kernel allocates privately (e.g. a convolution's workspace) is not a tensor and is not
  counted, for either network of a comparison.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

__all__ = ["LiveTensorBytes", "peak_memory"]


class LiveTensorBytes(TorchDispatchMode):
    """Tracks the bytes of tensor storages alive on one device while the mode is active.

    Args:
        device: the device type whose storages are counted (``"cpu"``).

    Attributes:
        current: bytes of the tracked storages alive now.
        peak: the largest value ``current`` reached.

    Examples:
        >>> tracker = LiveTensorBytes()
        >>> with tracker:
        ...     a = torch.zeros(1000)
        ...     b = a + 1
        ...     del a
        ...     c = b * 2
        >>> tracker.peak, tracker.current
        (8000, 8000)
    """

    def __init__(self, device: str = "cpu") -> None:
        super().__init__()
        self.device = torch.device(device).type
        self.current = 0
        self.peak = 0
        self._alive: dict[int, weakref.ref[Any]] = {}

    def track(self, tensors: Iterable[Any]) -> None:
        """Count the storages of ``tensors`` (non-tensors and storages already counted are ignored)."""
        for value in tensors:
            if isinstance(value, Tensor) and value.device.type == self.device and value.layout == torch.strided:
                self._add(value.untyped_storage())

    def _add(self, storage: torch.UntypedStorage) -> None:
        key = storage._cdata
        if key in self._alive:
            return
        nbytes = storage.nbytes()
        self._alive[key] = weakref.ref(storage, self._release_callback(key, nbytes))
        self.current += nbytes
        self.peak = max(self.peak, self.current)

    def _release_callback(self, key: int, nbytes: int) -> Callable[[Any], None]:
        def release(_: Any) -> None:
            if self._alive.pop(key, None) is not None:
                self.current -= nbytes

        return release

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        out = func(*args, **(kwargs or {}))
        self.track(tree_flatten(out)[0])
        return out


def peak_memory(work: Callable[[], Any], device: torch.device, alive: Iterable[Tensor] = ()) -> int:
    """The peak bytes held by tensors on ``device`` while ``work()`` runs (see the module docstring).

    Args:
        work: the code to measure (e.g. one training step).
        device: where it runs; CUDA uses the allocator's peak, every other device :class:`LiveTensorBytes`.
        alive: the tensors alive before ``work`` starts that count towards the peak (parameters, gradients,
            optimizer state, inputs).

    Examples:
        >>> alive = [torch.zeros(256)]
        >>> peak_memory(lambda: torch.ones(256) * 2, torch.device("cpu"), alive=alive)
        3072
    """
    tracker = LiveTensorBytes(device.type)
    tracker.track(alive)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        work()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device)) - before + tracker.peak
    with tracker:
        work()
    return tracker.peak
