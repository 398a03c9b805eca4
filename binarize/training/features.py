r"""Distillation of intermediate features: a binary network's block outputs pulled towards its teacher's.

The output loss of :func:`~binarize.diffusion.training_loss` tells a binary student *what* to compute; matching
the outputs of named modules inside the network as well tells it *how*, block by block, which is how binary
networks are often distilled from their full-precision twins (the block-wise feature losses of Martinez et al.,
"Training binary neural networks with real-to-binary convolutions", ICLR 2020, and of BiBERT / BiT for binary
transformers). For the selected modules :math:`m \in M` with outputs :math:`s_m` (student) and :math:`a_m` (teacher)
at the same input, the added loss is the mean relative L1 distance

.. math::

    \mathcal L_\text{feat} = \frac{1}{|M|} \sum_{m \in M}
        \frac{\operatorname{mean} |s_m - a_m|}{\operatorname{mean} |a_m| + \epsilon},

so every block weighs the same whatever the scale of its activations (:math:`\epsilon = 10^{-6}`; the teacher's
side carries no gradient).

The modules are chosen by regular expressions over module names (``torch.nn.Module.named_modules``), matched in
full; a pattern ending in ``:input`` takes the module's first input instead of its output. A name must exist in
both networks, run in both, and give tensors of the same shape. Binarizing traces the network into one graph:
the leaf modules it keeps (normalisations, activations, attention kept in full precision) still run under their
names, the containers around them (a residual block as a whole) do not. The input of a block's first
normalisation is the block's input, so ``encoder\.\d+\.blocks\.\d+\.norm1:input`` selects the activations
entering every encoder block, and ``out_norm:input`` the decoder's last features, in both networks.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from binarize.training.config import FEATURE_INPUT_SUFFIX, ConfigError

__all__ = ["FeatureDistillation"]

_EPSILON = 1e-6


class FeatureDistillation:
    """Forward hooks on the modules ``patterns`` select in both ``student`` and ``teacher``, and their loss.

    Use :meth:`capturing` around the forward passes of one step, then :meth:`loss`::

        with features.capturing():
            loss = training_loss(student, ..., teacher=teacher)
        loss = loss + weight * features.loss()

    Raises:
        ConfigError: a pattern selects no module present in both networks (the message lists some that are).
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, patterns: Sequence[str]) -> None:
        ours = dict(student.named_modules())
        theirs = dict(teacher.named_modules())
        shared = [name for name in ours if name and name in theirs]
        #: the selected features, as (module name, ``"input"`` or ``"output"``)
        self.names: list[tuple[str, str]] = []
        for pattern in patterns:
            side = "input" if pattern.endswith(FEATURE_INPUT_SUFFIX) else "output"
            compiled = re.compile(pattern.removesuffix(FEATURE_INPUT_SUFFIX))
            chosen = [(name, side) for name in shared if compiled.fullmatch(name)]
            if not chosen:
                raise ConfigError(
                    f"teacher_features: {pattern!r} matches no module that both the network and its teacher have; "
                    f"some that both have: {', '.join(_examples(shared))}"
                )
            self.names.extend(feature for feature in chosen if feature not in self.names)
        self._active = False
        self._student: dict[tuple[str, str], Tensor] = {}
        self._teacher: dict[tuple[str, str], Tensor] = {}
        self._handles = [ours[name].register_forward_hook(self._keep(self._student, (name, side)))
                         for name, side in self.names]
        self._handles += [theirs[name].register_forward_hook(self._keep(self._teacher, (name, side)))
                          for name, side in self.names]

    def _keep(self, store: dict[tuple[str, str], Tensor], feature: tuple[str, str]):  # noqa: ANN202 - a hook
        def hook(_module: nn.Module, inputs: tuple[object, ...], output: object) -> None:
            if self._active:
                value = (inputs[0] if inputs else None) if feature[1] == "input" else output
                if not isinstance(value, Tensor):
                    raise ConfigError(f"teacher_features: the {feature[1]} of module {feature[0]!r} is "
                                      f"{type(value).__name__}, not a tensor; choose modules whose {feature[1]} is one")
                store[feature] = value
        return hook

    @contextmanager
    def capturing(self) -> Iterator[None]:
        """Record the selected outputs of the forward passes inside the block (earlier records are dropped)."""
        self._student.clear()
        self._teacher.clear()
        self._active = True
        try:
            yield
        finally:
            self._active = False

    def loss(self) -> Tensor:
        """:math:`\\mathcal L_\\text{feat}` of the last :meth:`capturing` block.

        Raises:
            ConfigError: a selected module did not run in both networks inside the block, or its tensors differ in
                shape between the two.
        """
        terms = []
        for feature in self.names:
            name, side = feature
            if feature not in self._student or feature not in self._teacher:
                raise ConfigError(
                    f"teacher_features: module {name!r} did not run in both networks during the step (binarizing "
                    "traces the network into one graph, and only its leaf modules run under their names: select "
                    f"e.g. a block's first normalisation with ':input' instead)"
                )
            student, teacher = self._student[feature], self._teacher[feature].detach()
            if student.shape != teacher.shape:
                raise ConfigError(f"teacher_features: the {side} of module {name!r} is {tuple(student.shape)} in the "
                                  f"network and {tuple(teacher.shape)} in its teacher; choose modules whose {side}s "
                                  "match")
            terms.append((student - teacher).abs().mean() / (teacher.abs().mean() + _EPSILON))
        self._student.clear()
        self._teacher.clear()
        return torch.stack(terms).mean()

    def remove(self) -> None:
        """Remove the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def _examples(names: list[str], most: int = 8) -> list[str]:
    """A few of ``names``, the shallowest first."""
    return sorted(names, key=lambda name: (name.count("."), name))[:most] or ["(none)"]
