"""Parameter and operation accounting in the BI-DiffSR paper's convention.

The cost of a model is counted from what actually executes in **one** forward pass, not from module types alone:
a :class:`~torch.utils._python_dispatch.TorchDispatchMode` sees every aten operation, and global module forward
hooks keep a stack of the modules currently executing, so each operation is attributed to the innermost module
that runs it.

Convention (the paper's, see ``DESIGN.md``):

* ``params_m = (fp_params + binary_params / 32) / 1e6``
* ``ops_g = (fp_macs + binary_macs / 64 + norm_ops) / 1e9``

What is counted:

* **MACs** (multiply-accumulates, not FLOPs) of ``aten.convolution`` (including transposed convolutions), ``mm``,
  ``addmm``, ``bmm``, ``baddbmm``, ``addbmm``, ``mv``, ``addmv``, ``dot`` and the fused scaled-dot-product-attention
  kernels (``QK^T`` plus ``AV``; the CPU kernel and CUDA's flash, memory-efficient and cuDNN kernels, including
  grouped-query attention). The math fallback of attention decomposes into ``bmm`` and is counted there.
  The fused fast path of ``nn.MultiheadAttention`` / ``nn.TransformerEncoderLayer`` is switched off for the pass,
  so that their projections and attention are counted one by one.
* A matrix operation is a **layer** operation when it runs directly inside a module that owns a ``weight``
  parameter or is a binary layer, or when one of its operands is (a view of) a parameter of the model (for example
  the input projection of :class:`torch.nn.MultiheadAttention`). Any other matrix operation multiplies two
  activations and is counted as **attention** MACs (``attention_macs``); they are full-precision MACs.
* Layer MACs are **binary** only inside a layer whose weights *and* inputs are binary (``is_binary is True``).
  A layer with binary weights but full-precision inputs (``binary_weight is True`` but not ``is_binary``) cannot
  use XNOR/popcount arithmetic: its weights count as binary parameters, its MACs as full-precision MACs.
* **Normalisation** (batch, group, layer and instance norm, which reach aten as ``native_batch_norm``,
  ``native_group_norm``, ``native_layer_norm`` and friends) counts 5 operations per output element
  (``norm_ops``), added to the full-precision operations.
* Element-wise operations (activations, additions, scales, RPReLU, shortcuts) are not counted, as in the paper.
* **Coverage**: ``coverage = binary_macs / layer_macs``, the share of the layer MACs (convolutions and matrix
  products with a weight; attention between activations excluded) that are binary. Every parameter that a layer
  operation consumes in full precision is listed in ``full_precision_weights`` (``{"name", "module", "type",
  "shape", "params", "macs", "layer_weight"}``; ``layer_weight``: the module's own ``weight``), with the MACs it
  takes part in: the weights of full-precision layers, and weights
  a module uses in a functional call (``F.linear(x, self.proj_weight)``), which no layer rule can reach. A binary
  layer's weight is not listed, even where its inputs stay in full precision.
* **Parameters**: ``binary_params`` is the number of weight elements of layers with ``binary_weight is True``
  that ran in the forward pass (a binary layer whose weight the model only uses in functional calls counts as full
  precision, and so do its binary-layer counts);
  every other parameter is full precision. Shared parameters are counted once. Buffers are not parameters.

Examples:
    >>> import torch
    >>> from torch import nn
    >>> report = measure_cost(nn.Conv2d(3, 8, 3, padding=1), (torch.zeros(1, 3, 16, 16),))
    >>> report.fp_macs == 8 * 16 * 16 * 3 * 9
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Container, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["CostReport", "FunctionalCost", "LayerCost", "measure_cost", "NORM_OPS_PER_ELEMENT"]

#: Operations counted per output element of a normalisation (mean, variance, subtract, divide, affine).
NORM_OPS_PER_ELEMENT = 5

aten = torch.ops.aten


# --------------------------------------------------------------------------------------------------------------
# MAC formulas of the aten operations. Each takes the positional arguments of the op and returns MACs.
# --------------------------------------------------------------------------------------------------------------
def _numel(shape: Sequence[int]) -> int:
    return math.prod(int(s) for s in shape)


def _conv_macs(args: Sequence[Any], out: torch.Tensor) -> int:
    """MACs of ``convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups)``.

    A forward convolution computes, for every output element, a dot product over ``C_in / groups * prod(kernel)``
    inputs: ``MACs = out.numel() * weight.shape[1] * prod(kernel)`` (weight is ``[C_out, C_in/g, *kernel]``).
    A transposed convolution scatters every *input* element into ``C_out / groups * prod(kernel)`` outputs
    (weight is ``[C_in, C_out/g, *kernel]``): ``MACs = input.numel() * weight.shape[1] * prod(kernel)``.
    """
    x, weight, transposed = args[0], args[1], bool(args[6])
    per_element = int(weight.shape[1]) * _numel(weight.shape[2:])
    return (x.numel() if transposed else out.numel()) * per_element


def _mm_macs(a: torch.Tensor, b: torch.Tensor) -> int:
    """``[n, k] @ [k, m]``: ``n * k * m`` MACs."""
    return int(a.shape[0]) * int(a.shape[1]) * int(b.shape[1])


def _bmm_macs(a: torch.Tensor, b: torch.Tensor) -> int:
    """``[B, n, k] @ [B, k, m]``: ``B * n * k * m`` MACs."""
    return int(a.shape[0]) * int(a.shape[1]) * int(a.shape[2]) * int(b.shape[2])


def _sdpa_macs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> int:
    """Fused attention on ``q [..., L, E]``, ``k [..., S, E]``, ``v [..., S, Ev]``: ``QK^T`` then ``A V``.

    ``MACs = prod(q.shape[:-2]) * L * S * (E + Ev)``; with grouped-query attention the key/value heads are shared,
    but every query head still does the full work, hence the batch/head product is taken from ``q``.
    """
    batch = _numel(q.shape[:-2])
    length, source, e, ev = int(q.shape[-2]), int(k.shape[-2]), int(q.shape[-1]), int(v.shape[-1])
    return batch * length * source * (e + ev)


def _ops_if_present(*names: str) -> list[Any]:
    """The ``aten`` packets among ``names`` that exist in this torch build."""
    return [getattr(aten, n) for n in names if hasattr(aten, n)]


#: (packet, formula, operand positions that may be weights). Formulas see the op's args and first output.
_MATMUL_FORMULAS: list[tuple[Any, Callable[[Sequence[Any], torch.Tensor], int], tuple[int, ...]]] = [
    (aten.convolution, _conv_macs, (1,)),
    (aten._convolution, _conv_macs, (1,)),
    (aten.mm, lambda a, o: _mm_macs(a[0], a[1]), (0, 1)),
    (aten.addmm, lambda a, o: _mm_macs(a[1], a[2]), (1, 2)),
    (aten.bmm, lambda a, o: _bmm_macs(a[0], a[1]), (0, 1)),
    (aten.baddbmm, lambda a, o: _bmm_macs(a[1], a[2]), (1, 2)),
    (aten.addbmm, lambda a, o: _bmm_macs(a[1], a[2]), (1, 2)),
    (aten.mv, lambda a, o: int(a[0].shape[0]) * int(a[0].shape[1]), (0, 1)),
    (aten.addmv, lambda a, o: int(a[1].shape[0]) * int(a[1].shape[1]), (1, 2)),
    (aten.dot, lambda a, o: int(a[0].numel()), (0, 1)),
]
_ATTENTION_PACKETS = _ops_if_present(
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention",
    "_scaled_dot_product_fused_attention_overrideable",
)
_NORM_PACKETS = _ops_if_present(
    "native_batch_norm",
    "_native_batch_norm_legit",
    "_native_batch_norm_legit_no_training",
    "cudnn_batch_norm",
    "miopen_batch_norm",
    "native_group_norm",
    "native_layer_norm",
    "_fused_rms_norm",
)


# --------------------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------------------
@dataclass
class LayerCost:
    """Cost of one conv/linear-like layer that executed (float or binary).

    Attributes:
        name: module path in the model (``""`` for the model itself).
        type: class name of the module.
        binary: whether the layer binarizes weights *and* inputs (its MACs are binary MACs).
        binary_weight: whether the layer's weight is binary (its weight counts as binary parameters).
        params: all parameters of the module (including the binary weight and the module's children).
        binary_params: elements of the binary weight (0 for a full-precision layer).
        macs: all MACs the layer executed (``fp_macs + binary_macs``).
        binary_macs: the part of ``macs`` that is binary.
        calls: how many times the layer ran during the forward pass.
        output_shape: shape of the (first tensor) output of the last call.
    """

    name: str
    type: str
    binary: bool
    binary_weight: bool
    params: int
    binary_params: int
    macs: int
    binary_macs: int
    calls: int
    output_shape: list[int] | None

    @property
    def fp_macs(self) -> int:
        """Full-precision MACs of the layer."""
        return self.macs - self.binary_macs


@dataclass
class FunctionalCost:
    """Attention matmuls or normalisation operations executed inside one module.

    Attributes:
        name: module path of the innermost module that ran them (``""`` for the model itself).
        type: its class name.
        kind: ``"attention"`` (MACs of activation-by-activation products) or ``"norm"`` (normalisation ops).
        ops: the MACs (attention) or operations (norm).
        calls: how many aten operations contributed.
    """

    name: str
    type: str
    kind: str
    ops: int
    calls: int


@dataclass
class CostReport:
    """Parameters and operations of one forward pass, in the paper's convention.

    Attributes:
        fp_params: full-precision parameters (every parameter except binary weights; shared ones once).
        binary_params: elements of binary weights.
        fp_macs: full-precision MACs, including ``attention_macs``.
        binary_macs: MACs of binary layers (binary weights and binary inputs).
        attention_macs: MACs of products of two activations (attention); part of ``fp_macs``.
        norm_ops: normalisation operations (5 per output element).
        binary_layers: layers that ran in the forward pass with binary weights and inputs (``is_binary``).
        binary_weight_layers: layers that ran in the forward pass with binary weights (``binary_weight``).
        input_shapes: shapes of the tensor inputs of the measured forward pass.
        layers: one entry per conv/linear-like layer that executed, in execution order.
        functional: attention and normalisation work, per module, in execution order.
        full_precision_weights: every parameter a layer operation consumed in full precision, ``{"name",
            "module", "type", "shape", "params", "macs", "layer_weight"}``, by MACs (largest first).
    """

    fp_params: int
    binary_params: int
    fp_macs: int
    binary_macs: int
    attention_macs: int
    norm_ops: int
    binary_layers: int
    binary_weight_layers: int
    input_shapes: list[list[int]]
    layers: list[LayerCost] = field(default_factory=list)
    functional: list[FunctionalCost] = field(default_factory=list)
    full_precision_weights: list[dict[str, Any]] = field(default_factory=list)

    @property
    def layer_macs(self) -> int:
        """MACs of layer operations (convolutions and products with a weight), binary or not."""
        return sum(layer.macs for layer in self.layers)

    @property
    def coverage(self) -> float | None:
        """The binary share of the layer MACs, ``binary_macs / layer_macs`` (``None`` without layer MACs)."""
        return self.binary_macs / self.layer_macs if self.layer_macs else None

    @property
    def params(self) -> int:
        """All parameters, every one counted as one (no 1/32 discount)."""
        return self.fp_params + self.binary_params

    @property
    def params_m(self) -> float:
        """Paper parameters in millions: ``(fp_params + binary_params / 32) / 1e6``."""
        return (self.fp_params + self.binary_params / 32) / 1e6

    @property
    def ops(self) -> float:
        """Paper operations: ``fp_macs + binary_macs / 64 + norm_ops``."""
        return self.fp_macs + self.binary_macs / 64 + self.norm_ops

    @property
    def ops_g(self) -> float:
        """Paper operations in billions: ``(fp_macs + binary_macs / 64 + norm_ops) / 1e9``."""
        return self.ops / 1e9

    def totals(self) -> dict[str, Any]:
        """The summary figures only (no per-layer entries)."""
        return {
            "params_m": self.params_m,
            "ops_g": self.ops_g,
            "fp_params": self.fp_params,
            "binary_params": self.binary_params,
            "fp_macs": self.fp_macs,
            "binary_macs": self.binary_macs,
            "attention_macs": self.attention_macs,
            "norm_ops": self.norm_ops,
            "binary_layers": self.binary_layers,
            "binary_weight_layers": self.binary_weight_layers,
            "coverage": self.coverage,
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-serialisable): the totals, the input shapes and the per-layer entries."""
        layers = [{**asdict(layer), "fp_macs": layer.fp_macs} for layer in self.layers]
        return {
            **self.totals(),
            "input_shapes": [list(s) for s in self.input_shapes],
            "layers": layers,
            "functional": [asdict(f) for f in self.functional],
            "full_precision_weights": [dict(w) for w in self.full_precision_weights],
        }

    def format_table(self, *, max_name: int = 48) -> str:
        """A readable per-layer table followed by the totals in the paper's convention."""
        header = ("layer", "type", "bin", "params", "MACs", "output")
        rows = [
            (
                _shorten(layer.name or "(model)", max_name),
                layer.type,
                "yes" if layer.binary else ("w" if layer.binary_weight else ""),
                _human(layer.params),
                _human(layer.macs),
                "x".join(str(s) for s in layer.output_shape) if layer.output_shape else "",
            )
            for layer in self.layers
        ]
        rows += [
            (_shorten(f.name or "(model)", max_name), f.type, f.kind, "", _human(f.ops), "")
            for f in self.functional
            if f.kind == "attention"
        ]
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
        right = {3, 4}

        def line(row: Sequence[str]) -> str:
            cells = [str(c).rjust(w) if i in right else str(c).ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
            return "  ".join(cells).rstrip()

        out = [line(header), line(["-" * w for w in widths])]
        out += [line(r) for r in rows]
        out.append("")
        out.append(self.format_totals())
        return "\n".join(out)

    def format_totals(self) -> str:
        """The totals as a few readable lines."""
        return "\n".join(
            [
                f"params  {self.params_m:10.4f} M  = ({self.fp_params:,} FP + {self.binary_params:,} binary / 32) / 1e6",
                f"ops     {self.ops_g:10.4f} G  = ({self.fp_macs:,} FP MACs + {self.binary_macs:,} binary MACs / 64"
                f" + {self.norm_ops:,} norm ops) / 1e9",
                f"          attention MACs (part of FP MACs): {self.attention_macs:,}",
                f"          binary layers: {self.binary_layers} (binary weights: {self.binary_weight_layers})",
            ]
        )

    def __str__(self) -> str:
        return self.format_table()


def _human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{int(n)}"


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else "..." + text[-(width - 3) :]


# --------------------------------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------------------------------
def _flag(module: nn.Module, name: str) -> bool:
    """``getattr(module, name) is True``, tolerating missing attributes and properties that raise."""
    try:
        return getattr(module, name, False) is True
    except Exception:  # a property of a half-built module; treat as "not binary"
        return False


def _is_weight_layer(module: nn.Module) -> bool:
    """Modules whose matrix operations are layer operations rather than attention."""
    return (
        isinstance(module._parameters.get("weight"), torch.Tensor)
        or _flag(module, "is_binary")
        or _flag(module, "binary_weight")
        or _flag(module, "binary_input")
    )


def _storage_key(t: torch.Tensor) -> int | None:
    try:
        return t.untyped_storage().data_ptr()
    except Exception:  # tensors without storage (meta, fake, functional wrappers)
        return None


def _first_tensor(obj: Any) -> torch.Tensor | None:
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, (list, tuple)):
        for item in obj:
            found = _first_tensor(item)
            if found is not None:
                return found
    if isinstance(obj, dict):
        for item in obj.values():
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


@dataclass
class _LayerTally:
    module: nn.Module
    macs: int = 0
    binary_macs: int = 0
    calls: int = 0
    output_shape: list[int] | None = None


class _Counter(TorchDispatchMode):
    """Counts MACs and normalisation operations and attributes them to the innermost executing module."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.names: dict[nn.Module, str] = {}
        for name, module in model.named_modules():
            self.names.setdefault(module, name)
        self.param_names: dict[int, str] = {}
        for name, parameter in model.named_parameters():
            key = _storage_key(parameter)
            if key is not None:
                self.param_names.setdefault(key, name)
        self.param_storages = set(self.param_names)
        self.weight_uses: dict[str, list[Any]] = {}  # parameter name -> [module, MACs]
        self.stack: list[nn.Module] = []
        self.layers: dict[nn.Module, _LayerTally] = {}
        self.functional: dict[tuple[nn.Module, str], list[int]] = {}
        self.model = model

    # -- module stack ---------------------------------------------------------------------------------------
    def push(self, module: nn.Module, _inputs: Any) -> None:
        if module in self.names:
            self.stack.append(module)

    def pop(self, module: nn.Module, _inputs: Any, output: Any) -> None:
        if module not in self.names:
            return
        if self.stack and self.stack[-1] is module:
            self.stack.pop()
        tally = self.layers.get(module)
        if tally is not None:
            tally.calls += 1
            first = _first_tensor(output)
            tally.output_shape = list(first.shape) if first is not None else None

    @property
    def current(self) -> nn.Module:
        return self.stack[-1] if self.stack else self.model

    # -- aten operations ------------------------------------------------------------------------------------
    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        packet = func.overloadpacket
        for candidate, formula, weight_positions in _MATMUL_FORMULAS:
            if packet is candidate:
                self._matmul(formula(args, _first_tensor(out)), [args[i] for i in weight_positions])
                return out
        if packet in _ATTENTION_PACKETS:
            self._functional("attention", _sdpa_macs(args[0], args[1], args[2]))
        elif packet in _NORM_PACKETS:
            first = _first_tensor(out)
            if first is not None:
                self._functional("norm", NORM_OPS_PER_ELEMENT * first.numel())
        return out

    def _matmul(self, macs: int, operands: list[Any]) -> None:
        module = self.current
        is_layer = _is_weight_layer(module) or any(
            isinstance(t, torch.Tensor) and _storage_key(t) in self.param_storages for t in operands
        )
        if not is_layer:
            self._functional("attention", macs)
            return
        tally = self.layers.setdefault(module, _LayerTally(module))
        tally.macs += macs
        if _flag(module, "is_binary"):
            tally.binary_macs += macs
        if not _flag(module, "binary_weight"):
            self._full_precision_use(module, macs, operands)

    def _full_precision_use(self, module: nn.Module, macs: int, operands: list[Any]) -> None:
        """Attribute ``macs`` to the parameter the operation consumed (or the module's own weight)."""
        keys = [_storage_key(t) for t in operands if isinstance(t, torch.Tensor)]
        own = module._parameters.get("weight")
        own_key = _storage_key(own) if isinstance(own, torch.Tensor) else None
        key = next((k for k in keys if k in self.param_names), own_key)
        if key is None or key not in self.param_names:
            return
        self.weight_uses.setdefault(self.param_names[key], [module, 0, key == own_key])[1] += macs

    def _functional(self, kind: str, ops: int) -> None:
        entry = self.functional.setdefault((self.current, kind), [0, 0])
        entry[0] += ops
        entry[1] += 1


@contextmanager
def _without_fused_transformer_kernels() -> Iterator[None]:
    """Turn off the fused fast path of ``nn.MultiheadAttention`` / ``nn.TransformerEncoderLayer`` for the pass.

    In eval mode without gradients those modules call one fused aten kernel (``_native_multi_head_attention``,
    ``_transformer_encoder_layer_fwd``) instead of their projections and attention; the slow path computes the
    same function with operations that can be counted one by one.
    """
    mha = getattr(torch.backends, "mha", None)
    if mha is None or not hasattr(mha, "set_fastpath_enabled"):
        yield
        return
    before = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(before)


@contextmanager
def _module_hooks(counter: _Counter) -> Iterator[None]:
    pre = nn.modules.module.register_module_forward_pre_hook(counter.push)
    post = nn.modules.module.register_module_forward_hook(counter.pop)
    try:
        yield
    finally:
        pre.remove()
        post.remove()


def _binary_weights(model: nn.Module, executed: Container[nn.Module]) -> dict[int, torch.Tensor]:
    """Binary weight parameters by id (each shared weight once), of layers that ran as modules.

    A binary layer that never runs as a module (a model may use its weight in a functional call instead) holds a
    weight that is used in full precision, so it counts as a full-precision parameter.
    """
    found: dict[int, torch.Tensor] = {}
    for module in model.modules():
        weight = module._parameters.get("weight")
        if weight is not None and module in executed and _flag(module, "binary_weight"):
            found[id(weight)] = weight
    return found


def _as_inputs(example_inputs: Any) -> tuple:
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,)
    if isinstance(example_inputs, (tuple, list)):
        return tuple(example_inputs)
    raise TypeError(
        f"example_inputs must be a tensor or a tuple of positional arguments, got {type(example_inputs).__name__}; "
        f"wrap a single input as (x,)"
    )


def measure_cost(model: nn.Module, example_inputs: Any) -> CostReport:
    """Count parameters and operations of one forward pass of ``model`` on ``example_inputs``.

    The pass runs under :func:`torch.no_grad` in eval mode; the training flags of every module are restored
    afterwards. See the module docstring for what is counted and how.

    Args:
        model: the network (full precision, binarized, or mixed).
        example_inputs: the positional arguments of ``model.forward`` (a tuple), or a single tensor.

    Returns:
        A :class:`CostReport` with the paper's ``params_m`` and ``ops_g`` and per-layer entries.

    Raises:
        TypeError: when ``model`` is not a module or ``example_inputs`` is neither a tensor nor a tuple.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"measure_cost needs a torch.nn.Module, got {type(model).__name__}")
    inputs = _as_inputs(example_inputs)
    counter = _Counter(model)
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        with torch.no_grad(), _without_fused_transformer_kernels(), _module_hooks(counter), counter:
            model(*inputs)
    finally:
        for module, training in modes.items():
            module.training = training

    binary_weights = _binary_weights(model, counter.layers)
    binary_params = sum(w.numel() for w in binary_weights.values())
    fp_params = sum(p.numel() for p in model.parameters() if id(p) not in binary_weights)

    layers = []
    for module, tally in counter.layers.items():
        weight = module._parameters.get("weight")
        is_bw = _flag(module, "binary_weight") and weight is not None
        layers.append(
            LayerCost(
                name=counter.names[module],
                type=type(module).__name__,
                binary=_flag(module, "is_binary"),
                binary_weight=is_bw,
                params=sum(p.numel() for p in module.parameters()),
                binary_params=weight.numel() if is_bw and weight is not None else 0,
                macs=tally.macs,
                binary_macs=tally.binary_macs,
                calls=tally.calls,
                output_shape=tally.output_shape,
            )
        )
    functional = [
        FunctionalCost(name=counter.names[module], type=type(module).__name__, kind=kind, ops=ops, calls=calls)
        for (module, kind), (ops, calls) in counter.functional.items()
    ]
    layer_macs = sum(layer.macs for layer in layers)
    binary_macs = sum(layer.binary_macs for layer in layers)
    parameters = dict(model.named_parameters())
    full_precision_weights = [
        {"name": name, "module": counter.names.get(module, ""), "type": type(module).__name__,
         "shape": list(parameters[name].shape), "params": parameters[name].numel(), "macs": macs,
         "layer_weight": own}
        for name, (module, macs, own) in sorted(counter.weight_uses.items(), key=lambda item: -item[1][1])
    ]
    attention_macs = sum(f.ops for f in functional if f.kind == "attention")
    norm_ops = sum(f.ops for f in functional if f.kind == "norm")
    ran = list(counter.layers)
    return CostReport(
        fp_params=fp_params,
        binary_params=binary_params,
        fp_macs=layer_macs - binary_macs + attention_macs,
        binary_macs=binary_macs,
        attention_macs=attention_macs,
        norm_ops=norm_ops,
        binary_layers=sum(_flag(m, "is_binary") for m in ran),
        binary_weight_layers=sum(_flag(m, "binary_weight") for m in ran),
        input_shapes=[list(t.shape) for t in inputs if isinstance(t, torch.Tensor)],
        layers=layers,
        functional=functional,
        full_precision_weights=full_precision_weights,
    )
