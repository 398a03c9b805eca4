r"""Timestep awareness: per-channel parameters stored once per timestep group and gathered per sample.

A diffusion model is evaluated at many noise levels; BI-DiffSR gives each binary layer one set of activation
parameters (RSign shifts, RPReLU) per *group* of timesteps. With :math:`T` timesteps in :math:`K` groups, a sample at
integer timestep :math:`t` uses group

.. math:: g(t) = \operatorname{clamp}\bigl(\lfloor t K / T \rfloor,\ 0,\ K - 1\bigr).

Parameters are stored stacked, ``(K, C)``, and gathered per sample, ``param[g]`` of shape ``(B, C)``, so a batch may
mix timesteps, and every group's parameters are part of every forward pass (the unused rows get zero gradients), so
DistributedDataParallel needs no ``find_unused_parameters``.

Reference: Chen et al., "Binarized Diffusion Model for Image Super-Resolution" (BI-DiffSR), NeurIPS 2024
(timestep-aware redistribution and activation, TaR / TaA).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, fx, nn

from binarize.nn.channels import broadcast_channels, gather_rows

__all__ = ["TimestepHook", "TimestepState", "gather_groups", "group_index"]


@fx.wrap
def group_index(t: Tensor, total: int, groups: int) -> Tensor:
    r"""The group of each timestep: :math:`\operatorname{clamp}(\lfloor t K / T \rfloor, 0, K - 1)` (long tensor).

    Examples:
        >>> group_index(torch.tensor([0, 399, 400, 1999]), 2000, 5).tolist()
        [0, 0, 1, 4]
    """
    t = torch.as_tensor(t)
    if t.is_floating_point():
        t = t.floor()
    return torch.clamp(torch.div(t.long() * groups, total, rounding_mode="floor"), 0, groups - 1)


def gather_groups(param: Tensor, groups: Tensor, like: Tensor, channel_dim: int) -> Tensor:
    """``param[groups]`` (``(K, C)`` -> ``(B, C)``) shaped to broadcast against ``like`` along ``channel_dim``.

    A 0-dim ``groups`` (one group for the whole batch) gives ``(C,)`` broadcast the same way. One indexing
    operation, whatever the number of samples or groups.

    Examples:
        >>> param, groups = torch.arange(10.0).view(5, 2), torch.tensor([4, 0])
        >>> gather_groups(param, groups, torch.zeros(2, 2, 3, 3), 1).flatten()
        tensor([8., 9., 0., 1.])
    """
    return broadcast_channels(gather_rows(param, groups), like, -1 if channel_dim == -1 else 1)


class TimestepState:
    """The group indices of the current forward pass, shared by the timestep-aware layers of one model.

    Set by :class:`TimestepHook` before each forward pass (the fallback route); layers called with an explicit
    ``timestep_groups`` argument (the graph route) do not read it. One forward pass at a time per model: replicas
    made by ``nn.DataParallel`` share the state (use DistributedDataParallel, or the graph route).
    """

    def __init__(self) -> None:
        self.groups: Tensor | None = None

    def require(self) -> Tensor:
        """The current group indices, or a clear error when no timestep was given."""
        if self.groups is None:
            raise RuntimeError(
                "a timestep-aware binary layer ran without timestep groups: call the binarized model with its "
                "timestep input (the recipe's `timestep: input`), or pass timestep_groups= to the layer"
            )
        return self.groups

    def __deepcopy__(self, memo: dict[int, Any]) -> TimestepState:
        return TimestepState()  # per-forward data: a copy starts empty (layers of the copy share the new state)


@dataclass
class TimestepHook:
    """A forward pre-hook that reads the timestep input and sets :class:`TimestepState` (the fallback route).

    Attributes:
        state: the shared state.
        input: the name of the forward argument with the timesteps (or its position).
        total: the number of timesteps :math:`T`.
        groups: the number of groups :math:`K`.
        signature: the model's forward signature (to find the argument among positional and keyword arguments).
    """

    state: TimestepState
    input: str | int
    total: int
    groups: int
    signature: inspect.Signature

    def __call__(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if isinstance(self.input, int):
            t = args[self.input]
        else:
            t = self.signature.bind(*args, **kwargs).arguments[self.input]
        self.state.groups = group_index(t, self.total, self.groups)
