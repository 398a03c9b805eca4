r"""The packed export format: a safetensors file holding every binary weight as bits.

**Layout** (format ``binarize-packed/1``). For every binary layer ``P`` whose weight is :math:`\alpha_o \cdot
\pm 1` (:func:`~binarize.deploy.packed.binary_signs`):

* ``P.weight.bits``: ``uint8`` ``(O, ceil(R / 8))``. Row :math:`o` holds output channel :math:`o`'s :math:`R`
  weight signs in the weight's own order (a convolution's ``(C_in / G, k_h, k_w)`` flattened; a linear layer's
  input features; a transposed convolution's input channels of the group, then taps), bit :math:`j` of byte
  :math:`b` (least significant first) holding sign :math:`8b + j`: set for :math:`-1`, clear for :math:`+1`; the
  spare bits of the last byte are clear.
* ``P.weight.alpha``: ``float32`` ``(O,)``, the scale :math:`\alpha_o` (kept in ``float32`` under ``--half``).

Every other tensor of the model's state dict (biases, shifts, RPReLU and per-timestep tables, scale parameters,
batch norms, the full-precision layers) is stored under its own name, in ``float32`` or ``float16``. The tensors
lie in a few blobs, one per dtype, with a compressed index and checksums (:mod:`binarize.deploy.container`). The
metadata holds the format, the model's ``source`` (a model spec such as ``timm:resnet18`` or ``zoo:NAME`` with its
input size, or a training run's experiment config), the resolved ``recipe`` (JSON) and the ``layers`` index
(name -> class, weight shape and signs per output channel; compressed JSON).

So the file is :math:`B / 8` bytes for :math:`B` binary weights (rounded up per output channel) plus the float
parts, plus the metadata; :class:`ExportReport` states each part. The runtime re-lays the bits into its own
word layout (:mod:`binarize.deploy.bits`) when it loads them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from binarize.deploy.container import ExportError, compressed_json, read_compressed_json, read_container, write_container
from binarize.deploy.freeze import freeze
from binarize.deploy.packed import NotPackableError, binary_signs, output_rows, rows_to_weight
from binarize.errors import BinarizeError
from binarize.specs import untrusted_code
from binarize.nn.layers import BinaryLayerMixin

__all__ = ["FORMAT", "ExportError", "ExportReport", "PackedFile", "export", "export_checkpoint", "load", "read_packed"]

FORMAT = "binarize-packed/1"
_BITS, _ALPHA = ".weight.bits", ".weight.alpha"
_BYTE_WEIGHTS = torch.tensor([1 << j for j in range(8)], dtype=torch.int32)


@dataclass
class ExportReport:
    """What an export wrote, and how its size compares with the theory.

    Attributes:
        path: the file.
        file_bytes: its size.
        binary_weights: :math:`B`, the binary weights stored as bits.
        binary_bytes: the bytes of their bits (:math:`B / 8`, rounded up per output channel).
        float_values: values stored as numbers (scales, biases, full-precision layers, ...).
        float_bytes: their bytes.
        theory_bytes: :math:`B / 8` + ``float_bytes``.
        kept: binary layers whose weight could not be stored as bits (name -> why; stored as numbers).
    """

    path: Path
    file_bytes: int
    binary_weights: int
    binary_bytes: int
    float_values: int
    float_bytes: int
    theory_bytes: float
    kept: dict[str, str] = field(default_factory=dict)

    @property
    def overhead(self) -> float:
        """``file_bytes / theory_bytes - 1`` (the header, metadata and per-channel rounding)."""
        return self.file_bytes / self.theory_bytes - 1.0

    def __str__(self) -> str:
        lines = [
            f"{self.path}: {self.file_bytes / 1e6:.3f} MB = {self.binary_weights / 1e6:.3f} M binary weights as bits "
            f"({self.binary_bytes / 1e6:.3f} MB) + {self.float_values / 1e6:.3f} M numbers "
            f"({self.float_bytes / 1e6:.3f} MB) + header; {100 * self.overhead:+.2f}% against B/8 + float bytes",
        ]
        lines += [f"  kept as numbers: {name}: {reason}" for name, reason in self.kept.items()]
        return "\n".join(lines)


def _pack_bytes(signs: Tensor) -> Tensor:
    """``(O, R)`` signs -> ``(O, ceil(R / 8))`` ``uint8`` (set bit = -1, least significant bit first)."""
    bits = (signs < 0).to(torch.int32)
    spare = -signs.shape[1] % 8
    if spare:
        bits = torch.nn.functional.pad(bits, (0, spare))
    return (bits.view(signs.shape[0], -1, 8) * _BYTE_WEIGHTS).sum(-1).to(torch.uint8)


def _unpack_bytes(data: Tensor, count: int) -> Tensor:
    """The inverse of :func:`_pack_bytes`: ``(O, count)`` signs as ``float32``."""
    bits = (data.to(torch.int32).unsqueeze(-1) >> torch.arange(8, dtype=torch.int32)) & 1
    return (1 - 2 * bits.reshape(data.shape[0], -1)[:, :count]).to(torch.float32)


def _binary_layers(model: nn.Module) -> dict[str, BinaryLayerMixin]:
    return {name: m for name, m in model.named_modules() if isinstance(m, BinaryLayerMixin)}


def export(
    model: nn.Module, path: str | Path, *, half: bool = False, source: dict[str, Any] | None = None,
    recipe: Any = None,
) -> ExportReport:
    """Write ``model`` (a binarized model) as a packed file (see the module's description of the layout).

    Args:
        model: the binarized model; it is not changed.
        path: the file to write (atomically).
        half: store the float parts as ``float16`` (the scales :math:`\\alpha` stay ``float32``).
        source: how to rebuild the architecture: ``{"model": "timm:resnet18", "model_args": {...}, "size": 224}``
            or ``{"config": <experiment config as data>}``; without it, :func:`load` needs ``model=``.
        recipe: the recipe the model was binarized with (a name, path, mapping or
            :class:`~binarize.recipe.Recipe`); ``None``: the shipped recipe named in the model's binarize report,
            when its hash matches (else no recipe is stored and :func:`load` needs ``model=``).

    Raises:
        ExportError: the model has no binary layer.
    """
    layers = _binary_layers(model)
    if not layers:
        raise ExportError(f"{type(model).__name__} has no binary layer; binarize it first (binarize.binarize)")
    float_dtype = torch.float16 if half else torch.float32
    tensors: dict[str, Tensor] = {}
    index: dict[str, Any] = {}
    kept: dict[str, str] = {}
    binary_weights = binary_bytes = 0
    for name, layer in layers.items():
        try:
            signs, alpha = binary_signs(layer)
        except NotPackableError as exc:
            kept[name] = str(exc)
            continue
        rows = output_rows(signs, layer).cpu()
        tensors[name + _BITS] = _pack_bytes(rows)
        tensors[name + _ALPHA] = alpha.cpu().contiguous()
        binary_weights += rows.numel()
        binary_bytes += tensors[name + _BITS].numel()
        index[name] = {"class": type(layer).__name__, "weight_shape": list(layer.weight.shape), "bits": rows.shape[1]}
    float_values = float_bytes = 0
    for key, value in model.state_dict(keep_vars=False).items():
        owner = key.rsplit(".", 1)[0] if "." in key else ""
        if key.endswith(".weight") and owner in index:
            continue
        stored = value.detach().cpu()
        stored = (stored.to(float_dtype) if stored.is_floating_point() else stored).contiguous().clone()
        tensors[key] = stored
    for key, value in tensors.items():
        if not key.endswith(_BITS):
            float_values += value.numel()
            float_bytes += value.numel() * value.element_size()
    metadata = {
        "format": FORMAT,
        "source": json.dumps(source),
        "recipe": json.dumps(_resolved_recipe(model, recipe)),
        "layers": compressed_json(index),
        "float_dtype": "float16" if half else "float32",
    }
    target = write_container(path, tensors, metadata)
    return ExportReport(
        path=target, file_bytes=target.stat().st_size, binary_weights=binary_weights, binary_bytes=binary_bytes,
        float_values=float_values, float_bytes=float_bytes, theory_bytes=binary_weights / 8 + float_bytes, kept=kept,
    )


def export_checkpoint(
    checkpoint: str | Path, path: str | Path, *, half: bool = False, trust_code: bool = False
) -> ExportReport:
    """Export the trained model of a checkpoint written by ``binarize train`` (a file, or ``zoo:NAME`` of a trained
    zoo model), with its experiment config as the source, so that :func:`load` rebuilds it from the file alone.

    Raises:
        ExportError: the checkpoint is full precision (nothing binary to pack).
        CheckpointError: the checkpoint cannot be read, or names a Python file without ``trust_code``.
    """
    from binarize.training.evaluate import load_model
    from binarize.training.model import resolve_checkpoint

    model, found = load_model(resolve_checkpoint(checkpoint), trust_code=trust_code)
    if found.recipe is None:
        raise ExportError(f"{found.path} is a full-precision checkpoint (recipe: null); there is nothing binary to pack")
    return export(model, path, half=half, source={"config": found.config.to_dict()}, recipe=found.recipe)


def _resolved_recipe(model: nn.Module, recipe: Any) -> dict[str, Any] | None:
    """The recipe as plain data: the given one resolved, or the shipped recipe the model's binarize report names
    when its hash is the report's (else ``None``: not stored)."""
    from binarize.recipe import load_recipe

    if recipe is not None:
        return load_recipe(recipe).to_dict()
    report = getattr(model, "binarize_report", None)
    name, digest = getattr(report, "recipe", None), getattr(report, "recipe_hash", None)
    if not isinstance(name, str) or not name:
        return None
    try:
        found = load_recipe(name)
    except BinarizeError:
        return None
    return found.to_dict() if found.hash == digest else None


@dataclass
class PackedFile:
    """A packed export as read by :func:`read_packed`.

    Attributes:
        path: the file.
        source: how the architecture is rebuilt (``None``: not stored).
        recipe: the recipe as plain data (``None``: not stored).
        layers: binary layer name -> ``{"class", "weight_shape", "bits"}``.
        tensors: every stored tensor.
    """

    path: Path
    source: dict[str, Any] | None
    recipe: dict[str, Any] | None
    layers: dict[str, Any]
    tensors: dict[str, Tensor]

    def signs(self, name: str, layer: BinaryLayerMixin) -> tuple[Tensor, Tensor]:
        """Layer ``name``'s ``(signs, alpha)`` in ``layer``'s weight layout."""
        entry = self.layers[name]
        if type(layer).__name__ != entry["class"] or list(layer.weight.shape) != entry["weight_shape"]:
            raise ExportError(
                f"{self.path}: layer {name} is a {entry['class']} with weight {tuple(entry['weight_shape'])} in the "
                f"file, but a {type(layer).__name__} with weight {tuple(layer.weight.shape)} in the model"
            )
        rows = _unpack_bytes(self.tensors[name + _BITS], entry["bits"])
        return rows_to_weight(rows, layer), self.tensors[name + _ALPHA].to(torch.float32)

    def float_state(self) -> dict[str, Tensor]:
        """The stored tensors that are not packed weights, by state-dict name."""
        return {k: v for k, v in self.tensors.items() if not k.endswith((_BITS, _ALPHA))}


def read_packed(path: str | Path) -> PackedFile:
    """Read and check a packed export (see :mod:`binarize.deploy.container` for the checks).

    Raises:
        ExportError: a missing or unreadable file, another format, broken metadata, or tensors that do not match
            their checksums (the message names the file and the tensors).
    """
    source = Path(path)
    tensors, metadata = read_container(source, FORMAT)
    fields: dict[str, Any] = {}
    for key, kind in (("source", (dict, type(None))), ("recipe", (dict, type(None))), ("layers", dict)):
        try:
            fields[key] = read_compressed_json(metadata[key]) if key == "layers" else json.loads(metadata[key])
        except (KeyError, ValueError) as exc:
            raise ExportError(f"{source}: its metadata field {key!r} is missing or not JSON ({exc})") from None
        if not isinstance(fields[key], kind):
            raise ExportError(f"{source}: its metadata field {key!r} has the wrong type")
    for name in fields["layers"]:
        if name + _BITS not in tensors or name + _ALPHA not in tensors:
            raise ExportError(f"{source} is damaged: the bits or scale of layer {name} are missing")
    return PackedFile(source, fields["source"], fields["recipe"], fields["layers"], tensors)


def load(
    path: str | Path, *, model: nn.Module | None = None, packed: bool = True, compiled: bool | None = None,
    trust_code: bool = False,
) -> nn.Module:
    """The model stored in a packed export, in eval mode.

    Args:
        path: the file (from :func:`export` or ``binarize export``).
        model: the binarized architecture to fill (not changed; a copy is filled), for files without a stored
            source; by default the architecture is rebuilt from the file's source and recipe.
        packed: ``True`` (default) gives the packed runtime (:func:`~binarize.deploy.freeze`); ``False`` the
            fake-quantised model with the stored weights, the same model as the one exported.
        compiled: passed to :func:`~binarize.deploy.freeze`.
        trust_code: allow a source that runs a Python file of the user's (``path/to/file.py:factory``).

    Raises:
        ExportError: the file is not a readable export, its source cannot be rebuilt, or its tensors do not fit
            the architecture.
    """
    from binarize.engine.module_copy import deep_copy_module

    found = read_packed(path)
    skeleton = deep_copy_module(model) if model is not None else _rebuild(found, trust_code)
    layers = _binary_layers(skeleton)
    missing = sorted(set(found.layers) - set(layers))
    if missing:
        raise ExportError(f"{found.path}: the model has no binary layer named {', '.join(missing[:5])}")
    given = {name: found.signs(name, layers[name]) for name in found.layers}
    state = {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in found.float_state().items()}
    with torch.no_grad():
        for name, (signs, alpha) in given.items():
            layer = layers[name]
            layer.weight.copy_(rows_to_weight(output_rows(signs, layer) * alpha[:, None], layer))
        _load_state(skeleton, state, found)
    skeleton.eval()
    if not packed:
        _check_rebuilt(found, layers, given)
        return skeleton
    return freeze(skeleton, inplace=True, compiled=compiled, weights=given)


def _load_state(model: nn.Module, state: dict[str, Tensor], found: PackedFile) -> None:
    expected = set(model.state_dict())
    packed_weights = {f"{name}.weight" for name in found.layers}
    missing = sorted(expected - set(state) - packed_weights)
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        from binarize.training.checkpoint import listed_names

        parts = [f"missing {listed_names(missing)}" if missing else "", f"unexpected {listed_names(unexpected)}"
                 if unexpected else ""]
        raise ExportError(f"{found.path} does not fit the model: " + "; ".join(p for p in parts if p))
    model.load_state_dict(state, strict=False)


def _check_rebuilt(found: PackedFile, layers: dict[str, BinaryLayerMixin], given: dict[str, Any]) -> None:
    """The fake-quantised layers must compute with the stored binary weights: the same signs, the same scales up to
    float rounding (a mean of equal magnitudes is not always exactly that magnitude)."""
    for name, (signs, alpha) in given.items():
        layer = layers[name]
        with torch.no_grad():
            rebuilt = output_rows(layer.binary_weight_tensor().detach().to(torch.float32), layer)
        stored = output_rows(signs, layer)
        same_signs = torch.equal(torch.where(rebuilt < 0, -1.0, 1.0), stored) or not bool(alpha.all())
        if not same_signs or not torch.allclose(rebuilt.abs().amax(1), alpha, rtol=1e-5, atol=0.0):
            raise ExportError(
                f"{found.path}: layer {name}'s scale {layer.options()['scale']} does not reproduce the stored binary "
                "weight from it in fake-quantised form; load it packed (packed=True)"
            )


def _rebuild(found: PackedFile, trust_code: bool) -> nn.Module:
    """The binarized architecture described by the file's source and recipe (weights to be overwritten)."""
    from binarize.api import binarize
    from binarize.specs import resolve_model
    source = found.source
    if source is None:
        raise ExportError(f"{found.path} stores no model source; pass the binarized architecture (load(..., model=))")
    if "config" in source:
        from binarize.training.config import ConfigError, load_config
        from binarize.training.model import build_model

        try:
            config = load_config(source["config"])
        except ConfigError as exc:
            raise ExportError(f"{found.path}: the experiment config it stores does not validate: {exc}") from None
        spec = config.model
        _check_trust(found, spec, trust_code)
        return build_model(config, found.recipe).model
    spec = str(source.get("model"))
    _check_trust(found, spec, trust_code)
    if found.recipe is None:
        raise ExportError(f"{found.path} stores no recipe; pass the binarized architecture (load(..., model=))")
    size = source.get("size")
    resolved = resolve_model(spec, size=size)
    base = resolved.model
    if source.get("model_args") and spec.startswith("zoo:"):
        from binarize.zoo import ZOO

        base = ZOO.get(spec[len("zoo:"):]).build(size=size, **source["model_args"])
    return binarize(base, found.recipe, example_inputs=resolved.example_inputs(size))


def _check_trust(found: PackedFile, spec: str, trust_code: bool) -> None:
    if (refused := untrusted_code(spec, trust_code, str(found.path))) is not None:
        raise ExportError(refused)
