"""One training step (forward, L1 loss against a fixed target, backward, Adam step) and its inputs."""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["TrainingStep", "argument_position", "fixed_target", "training_batch"]


def training_batch(
    example: Sequence[Any],
    batch: int,
    *,
    timestep_position: int | None = None,
    total_timesteps: int | None = None,
    seed: int = 0,
) -> tuple[Any, ...]:
    """Inputs of batch size ``batch`` made from one-sample example inputs.

    Floating-point inputs are repeated along the batch and perturbed with Gaussian noise (standard deviation 0.1),
    so that no two samples are equal; the timestep input of a diffusion model (``timestep_position``) gets a random
    integer timestep in ``[0, total_timesteps)`` per sample, so that a batch mixes timestep groups; other inputs
    are repeated.

    Args:
        example: positional forward arguments with batch size 1 (e.g. :meth:`~binarize.specs.ModelSpec.example_inputs`).
        batch: the batch size wanted.
        timestep_position: the index of the timestep input in ``example``, if any.
        total_timesteps: the number of timesteps :math:`T` (needed with ``timestep_position``).
        seed: seeds the noise and the timesteps.

    Examples:
        >>> inputs = (torch.zeros(1, 3, 4, 4), torch.tensor([7]))
        >>> x, t = training_batch(inputs, 4, timestep_position=1, total_timesteps=2000)
        >>> x.shape, t.shape, bool(x[0].ne(x[1]).any())
        (torch.Size([4, 3, 4, 4]), torch.Size([4]), True)
    """
    generator = torch.Generator().manual_seed(seed)
    out: list[Any] = []
    for position, value in enumerate(example):
        if not isinstance(value, Tensor) or value.dim() == 0 or value.shape[0] != 1:
            out.append(value)
        elif position == timestep_position:
            if total_timesteps is None:
                raise ValueError("a timestep input needs total_timesteps")
            t = torch.randint(0, total_timesteps, (batch,), generator=generator)
            out.append(t.to(device=value.device, dtype=value.dtype))
        elif value.is_floating_point():
            repeated = value.expand(batch, *value.shape[1:])
            noise = torch.randn(repeated.shape, generator=generator, dtype=value.dtype)
            out.append(repeated + 0.1 * noise.to(value.device))
        else:
            out.append(value.expand(batch, *value.shape[1:]).clone())
    return tuple(out)


def argument_position(model: nn.Module, name: str) -> int | None:
    """The position of the forward argument ``name`` of ``model`` (``None`` when it has none by that name)."""
    names = list(inspect.signature(model.forward).parameters)
    return names.index(name) if name in names else None


def fixed_target(model: nn.Module, inputs: tuple[Any, ...], *, seed: int = 0) -> Tensor:
    """A seeded random tensor of the shape, dtype and device of ``model(*inputs)`` (one forward pass, no grad).

    Raises:
        TypeError: the model does not return one tensor.
    """
    with torch.no_grad():
        out = model(*inputs)
    if not isinstance(out, Tensor):
        raise TypeError(
            f"the training step needs a model that returns one tensor, got {type(out).__name__}; wrap the model so "
            f"that its forward returns the tensor to train"
        )
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(out.shape, generator=generator).to(out.device, out.dtype)


@dataclass
class TrainingStep:
    """A training step: ``zero_grad``, forward, L1 loss against ``target``, backward, optimizer step.

    Attributes:
        model: the network (possibly compiled), in training mode.
        optimizer: its optimizer.
        inputs: positional forward arguments.
        target: a tensor of the output's shape.
        autocast: run forward and loss under :func:`torch.autocast` with this dtype (``None``: no autocast).
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    inputs: tuple[Any, ...]
    target: Tensor
    autocast: torch.dtype | None = None

    @classmethod
    def adam(cls, model: nn.Module, inputs: tuple[Any, ...], target: Tensor, *, lr: float = 1e-4,
             autocast: torch.dtype | None = None) -> TrainingStep:
        """A step with Adam at learning rate ``lr``."""
        return cls(model, torch.optim.Adam(model.parameters(), lr=lr), inputs, target, autocast)

    def __call__(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.target.device.type, dtype=self.autocast or torch.float32,
                            enabled=self.autocast is not None):
            loss = F.l1_loss(self.model(*self.inputs).float(), self.target.float())
        loss.backward()
        self.optimizer.step()

    def alive(self) -> Iterator[Tensor]:
        """The tensors the step holds between calls: parameters, gradients, buffers, optimizer state, data."""
        for param in self.model.parameters():
            yield param
            if param.grad is not None:
                yield param.grad
        yield from self.model.buffers()
        for state in self.optimizer.state.values():
            yield from (v for v in state.values() if isinstance(v, Tensor))
        yield from (v for v in self.inputs if isinstance(v, Tensor))
        yield self.target
