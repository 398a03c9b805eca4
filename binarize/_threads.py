"""Running a block of code on a given number of torch CPU threads."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["cpu_threads"]


@contextmanager
def cpu_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(count)`` and restore the previous setting (``None``: unchanged).

    Examples:
        >>> before = torch.get_num_threads()
        >>> with cpu_threads(1):
        ...     torch.get_num_threads()
        1
        >>> torch.get_num_threads() == before
        True
    """
    previous = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
