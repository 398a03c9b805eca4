r"""Multi-head attention with its projections as ``nn.Linear`` modules, so that layer rules can binarize them.

:class:`torch.nn.MultiheadAttention` keeps its query, key and value projections as raw weight tensors
(``in_proj_weight``, packed :math:`3E \times E` when the three share the embedding size) that it applies inside
``F.multi_head_attention_forward``: no module a recipe could select holds them. :class:`ProjectedMultiheadAttention`
computes the same function with four ``nn.Linear`` modules (``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``):

.. math:: \operatorname{head}_h = \operatorname{softmax}\!\Big(\frac{Q_h K_h^\top}{\sqrt{d}} + M\Big) V_h, \qquad
          y = W_o [\operatorname{head}_1, \dots, \operatorname{head}_H] + b_o

with :math:`Q = x_q W_q^\top + b_q` (likewise :math:`K`, :math:`V`), :math:`d = E / H` and :math:`M` the additive
form of ``attn_mask`` and ``key_padding_mask`` (boolean masks: ``True`` is "not allowed", :math:`-\infty`). The call
signature and the results are those of ``nn.MultiheadAttention`` (``batch_first``, unbatched inputs, both mask
kinds, ``need_weights`` / ``average_attn_weights``, ``is_causal``, attention dropout in training). The options
``add_bias_kv`` and ``add_zero_attn`` are refused.

Reference: Vaswani et al., "Attention Is All You Need", NeurIPS 2017 (the attention); the semantics of
``torch.nn.MultiheadAttention``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from binarize.errors import UnsupportedLayerError

__all__ = ["ProjectedMultiheadAttention"]


class ProjectedMultiheadAttention(nn.Module):
    """``nn.MultiheadAttention`` with ``nn.Linear`` projections (see the module docstring).

    Args:
        embed_dim: :math:`E`.
        num_heads: :math:`H` (must divide :math:`E`).
        dropout: attention dropout probability (training only).
        bias: whether the projections have biases.
        kdim: key features (default :math:`E`).
        vdim: value features (default :math:`E`).
        batch_first: inputs and outputs are ``(N, L, E)`` instead of ``(L, N, E)``.

    Examples:
        >>> mha = nn.MultiheadAttention(16, 4, batch_first=True).eval()
        >>> projected = ProjectedMultiheadAttention.from_float(mha).eval()
        >>> x = torch.randn(2, 5, 16)
        >>> torch.allclose(projected(x, x, x)[0], mha(x, x, x)[0], atol=1e-6)
        True
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} must be divisible by num_heads {num_heads}")
        factory = {"device": device, "dtype": dtype}
        self.embed_dim, self.num_heads, self.dropout, self.batch_first = embed_dim, num_heads, dropout, batch_first
        self.head_dim = embed_dim // num_heads
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)
        self.k_proj = nn.Linear(kdim or embed_dim, embed_dim, bias=bias, **factory)
        self.v_proj = nn.Linear(vdim or embed_dim, embed_dim, bias=bias, **factory)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)

    @classmethod
    def from_float(cls, mha: nn.MultiheadAttention) -> ProjectedMultiheadAttention:
        """The same attention as ``mha``, with its weights copied into the four projections.

        Raises:
            UnsupportedLayerError: for ``add_bias_kv`` or ``add_zero_attn``, which have no projection form here.
        """
        if mha.bias_k is not None or mha.add_zero_attn:
            raise UnsupportedLayerError(
                "MultiheadAttention with add_bias_kv or add_zero_attn appends learned or zero keys and values, which "
                "ProjectedMultiheadAttention does not model; its projections stay in full precision"
            )
        weight = mha.in_proj_weight if mha._qkv_same_embed_dim else None
        bias = mha.in_proj_bias
        new = cls(
            mha.embed_dim, mha.num_heads, mha.dropout, bias is not None, mha.kdim, mha.vdim, mha.batch_first,
            device=mha.out_proj.weight.device, dtype=mha.out_proj.weight.dtype,
        )
        size = mha.embed_dim
        with torch.no_grad():
            for index, projection in enumerate((new.q_proj, new.k_proj, new.v_proj)):
                rows = slice(index * size, (index + 1) * size)
                source = weight[rows] if weight is not None else (
                    mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight
                )[index]
                projection.weight.copy_(source)
                if bias is not None:
                    projection.bias.copy_(bias[rows])
            new.out_proj.weight.copy_(mha.out_proj.weight)
            if mha.out_proj.bias is not None and new.out_proj.bias is not None:
                new.out_proj.bias.copy_(mha.out_proj.bias)
        new.train(mha.training)
        return new

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """As :meth:`torch.nn.MultiheadAttention.forward`: ``(output, weights or None)``."""
        unbatched = query.dim() == 2
        if unbatched:
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif not self.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        batch, target, source = query.shape[0], query.shape[1], key.shape[1]
        q = self._heads(self.q_proj(query))
        k = self._heads(self.k_proj(key))
        v = self._heads(self.v_proj(value))
        mask = self._additive_mask(attn_mask, key_padding_mask, is_causal, batch, target, source, q.dtype)
        p = self.dropout if self.training else 0.0
        if need_weights:
            weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(self.head_dim) + (0 if mask is None else mask), -1)
            if p > 0:
                weights = F.dropout(weights, p)
            heads = weights @ v
        else:
            weights = None
            heads = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        out = self.out_proj(heads.transpose(1, 2).reshape(batch, target, self.embed_dim))
        if weights is not None and average_attn_weights:
            weights = weights.mean(dim=1)
        if unbatched:
            return out.squeeze(0), None if weights is None else weights.squeeze(0)
        return (out if self.batch_first else out.transpose(0, 1)), weights

    def _heads(self, x: Tensor) -> Tensor:
        """``(N, L, E)`` -> ``(N, H, L, d)``."""
        return x.view(x.shape[0], x.shape[1], self.num_heads, self.head_dim).transpose(1, 2)

    def _additive_mask(
        self,
        attn_mask: Tensor | None,
        key_padding_mask: Tensor | None,
        is_causal: bool,
        batch: int,
        target: int,
        source: int,
        dtype: torch.dtype,
    ) -> Tensor | None:
        """One additive mask broadcastable to ``(N, H, L, S)``, or ``None``."""
        if attn_mask is None and is_causal:
            attn_mask = torch.ones(target, source, dtype=torch.bool).triu(1)
        mask = None
        if attn_mask is not None:
            mask = _additive(attn_mask, dtype)
            mask = mask.view(batch, self.num_heads, target, source) if mask.dim() == 3 else mask
        if key_padding_mask is not None:
            padding = _additive(key_padding_mask, dtype).view(batch, 1, 1, source)
            mask = padding if mask is None else mask + padding
        return mask

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, batch_first={self.batch_first}"


def _additive(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """A boolean mask (``True``: not allowed) as ``-inf`` / 0; a float mask as it is."""
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))
    return mask.to(dtype)
