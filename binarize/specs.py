"""Model specifications: turn ``timm:NAME``, ``zoo:NAME`` or ``path/to/file.py:factory`` into a model and inputs.

A spec is resolved by the resolver registered for its prefix (:data:`RESOLVERS`); a spec without a registered
prefix that names a Python file (``path/to/file.py:factory``) goes to the ``file`` resolver. Every failure raises
:class:`~binarize.errors.ModelSpecError` saying what was received and which forms are allowed.

Examples:
    >>> spec = resolve_model("zoo:resnet8")
    >>> [tuple(x.shape) for x in spec.example_inputs()]
    [(1, 3, 32, 32)]
    >>> [tuple(x.shape) for x in spec.example_inputs(input_shape=(2, 3, 16, 16))]
    [(2, 3, 16, 16)]
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import inspect
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from binarize._registry import Registry
from binarize.errors import ModelSpecError, UnknownNameError

__all__ = [
    "ALLOWED_FORMS", "RESOLVERS", "TRUSTED_MODEL_PREFIXES", "ModelSpec", "infer_example_inputs", "resolve_model",
    "untrusted_code",
]

#: Model specs that build a network without running a file of the user's Python code.
TRUSTED_MODEL_PREFIXES = ("zoo:", "timm:")


def untrusted_code(spec: str, trust_code: bool, where: str) -> str | None:
    """Why building ``spec`` for ``where`` (a file that names it) is refused, or ``None`` when it may be built.

    A spec other than ``zoo:`` / ``timm:`` runs a Python file (``path/to/file.py:factory``); reading a checkpoint or
    an export must not run code a stranger put beside it, so that needs ``trust_code``.
    """
    if trust_code or spec.startswith(TRUSTED_MODEL_PREFIXES):
        return None
    return (f"{where} builds its model by running the Python file {spec!r}; pass --trust-code (trust_code=True) if "
            "you trust that file, since building the model runs its code")

#: Human-readable list of the accepted spec forms, used in error messages.
ALLOWED_FORMS = "timm:NAME (a timm architecture), zoo:NAME (a binarize reference network) or path/to/file.py:factory"

#: Spatial size used for a file model without ``example_inputs`` when no size is given.
DEFAULT_FILE_SIZE = 32

InputBuilder = Callable[[int | None], tuple]


def _randn(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0))


@dataclass
class ModelSpec:
    """A resolved model plus the recipe for example inputs of its forward pass.

    Attributes:
        model: the network (randomly initialised, in training mode as built).
        name: the spec it was resolved from (e.g. ``"timm:resnet18"``).
        input_builder: ``builder(size) -> tuple`` of positional forward arguments; ``size=None`` means the
            model's default size.
        description: one line about the model, when the source has one.
    """

    model: nn.Module
    name: str
    input_builder: InputBuilder = field(repr=False)
    description: str = ""

    def example_inputs(self, size: int | None = None, input_shape: Sequence[int] | None = None) -> tuple:
        """Positional forward arguments for one forward pass.

        Args:
            size: spatial size (height = width) of image inputs; None for the model's default.
            input_shape: the full shape of the first input (e.g. ``(B, C, H, W)``); further inputs (a diffusion
                timestep, ...) come from the model's own builder, resized to the same batch.

        Returns:
            A tuple of tensors to call the model with.

        Raises:
            ModelSpecError: when both arguments are given, a shape is not positive, or inputs cannot be inferred.
        """
        if size is not None and input_shape is not None:
            raise ModelSpecError(f"give a size ({size}) or an input shape ({tuple(input_shape)}), not both")
        if size is not None and (not isinstance(size, int) or size <= 0):
            raise ModelSpecError(f"size must be a positive integer, got {size!r}")
        if input_shape is None:
            return self.input_builder(size)
        shape = tuple(int(s) for s in input_shape)
        if not shape or any(s <= 0 for s in shape):
            raise ModelSpecError(f"input shape must be positive integers such as 1,3,32,32; got {tuple(input_shape)}")
        try:
            defaults = self.input_builder(shape[-1] if len(shape) >= 3 else None)
        except ModelSpecError:
            defaults = ()
        first = _randn(*shape)
        old_batch = defaults[0].shape[0] if defaults and isinstance(defaults[0], torch.Tensor) else None
        rest = tuple(_rebatch(t, old_batch, shape[0]) for t in defaults[1:])
        return (first, *rest)


def _rebatch(value: object, old_batch: int | None, batch: int) -> object:
    """Give a further input the batch size of the first one (repeating its first sample)."""
    if not isinstance(value, torch.Tensor) or value.ndim == 0 or old_batch is None or value.shape[0] != old_batch:
        return value
    if old_batch == batch:
        return value
    return value[:1].expand(batch, *value.shape[1:]).clone()


def infer_example_inputs(model: nn.Module, size: int | None = None) -> tuple:
    """Inputs inferred from the first convolution (``(1, C, size, ...)``) or first linear layer (``(1, F)``).

    Raises:
        ModelSpecError: when the model has neither.
    """
    for module in model.modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            spatial = [size or DEFAULT_FILE_SIZE] * len(module.kernel_size)
            return (_randn(1, module.in_channels, *spatial),)
        if isinstance(module, nn.Linear):
            return (_randn(1, module.in_features),)
    raise ModelSpecError(
        f"cannot infer example inputs for {type(model).__name__}: it has no convolution or linear layer to read "
        f"the input channels from; define example_inputs(size) next to the factory or pass --input-shape"
    )


#: Resolvers by spec prefix: ``resolver(rest_of_spec, size) -> ModelSpec``.
RESOLVERS: Registry[Callable[[str, int | None], ModelSpec]] = Registry("model spec prefix")

_PREFIX = re.compile(r"^(?P<prefix>[A-Za-z][\w-]*):(?P<rest>.*)$")


def resolve_model(spec: str, *, size: int | None = None) -> ModelSpec:
    """Resolve a model spec into a :class:`ModelSpec`.

    Args:
        spec: ``timm:NAME``, ``zoo:NAME`` or ``path/to/file.py:factory`` (or another registered prefix).
        size: the input size the model will run at, for networks built for one size (a timm ViT, the
            MLP-Mixer of the zoo); None for the default.

    Raises:
        ModelSpecError: for anything that cannot be resolved; the message names the spec and the allowed forms.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ModelSpecError(f"a model spec must be a non-empty string, got {spec!r}; use {ALLOWED_FORMS}")
    spec = spec.strip()
    match = _PREFIX.match(spec)
    if match and match["prefix"] in RESOLVERS:
        if not match["rest"]:
            raise ModelSpecError(f"model spec {spec!r} names no model after {match['prefix']!r}; use {ALLOWED_FORMS}")
        return RESOLVERS.get(match["prefix"])(match["rest"], size)
    if re.search(r"\.py(:|$)", spec):
        return RESOLVERS.get("file")(spec, size)
    hint = ""
    if match:
        close = difflib.get_close_matches(match["prefix"], RESOLVERS.names(), n=1)
        hint = f" Did you mean {close[0]}:{match['rest']}?" if close else ""
    else:
        hint = _bare_name_hint(spec)
    raise ModelSpecError(
        f"cannot resolve model spec {spec!r}.{hint} Allowed forms: {ALLOWED_FORMS} "
        f"(known prefixes: {', '.join(RESOLVERS.names())})"
    )


def _bare_name_hint(name: str) -> str:
    """A "did you mean zoo:NAME / timm:NAME" hint for a spec given without a prefix."""
    from binarize.zoo import ZOO

    if name in ZOO:
        return f" Did you mean zoo:{name}?"
    try:
        import timm

        return f" Did you mean timm:{name}?" if timm.is_model(name) else ""
    except ImportError:  # pragma: no cover - timm is a dependency
        return ""


# ----------------------------------------------------------------------------------------------------------------
# zoo:NAME
# ----------------------------------------------------------------------------------------------------------------
@RESOLVERS.register("zoo")
def _resolve_zoo(name: str, size: int | None) -> ModelSpec:
    from binarize.zoo import ZOO  # imported here: the zoo imports model files that may be heavy

    try:
        entry = ZOO.get(name)
    except UnknownNameError as error:
        raise ModelSpecError(f"zoo:{name}: {error}") from None
    model = entry.build(size=size)
    return ModelSpec(
        model=model,
        name=f"zoo:{name}",
        input_builder=lambda s: entry.inputs(s if s is not None else size),
        description=entry.description,
    )


# ----------------------------------------------------------------------------------------------------------------
# timm:NAME
# ----------------------------------------------------------------------------------------------------------------
@RESOLVERS.register("timm")
def _resolve_timm(name: str, size: int | None) -> ModelSpec:
    import timm

    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join('timm:' + c for c in close)}?" if close else ""
        raise ModelSpecError(
            f"timm:{name}: timm has no model named {name!r}.{hint} "
            f"List the names with timm.list_models('*pattern*')."
        )
    try:
        model = _create_timm(timm, name, size)
    except Exception as error:  # timm raises many kinds; the user needs the message, not the stack
        raise ModelSpecError(f"timm:{name}: timm.create_model failed: {type(error).__name__}: {error}") from error
    cfg = getattr(model, "pretrained_cfg", None) or {}
    channels, height, width = tuple(cfg.get("input_size", (3, 224, 224)))[-3:]

    def build(s: int | None) -> tuple:
        s = s if s is not None else size
        return (_randn(1, channels, height, width),) if s is None else (_randn(1, channels, s, s),)

    return ModelSpec(model=model, name=f"timm:{name}", input_builder=build, description=f"timm {name}")


def _create_timm(timm: ModuleType, name: str, size: int | None) -> nn.Module:
    """``timm.create_model(name)``, built for ``size`` where the architecture takes an image size."""
    if size is not None:
        try:
            return timm.create_model(name, pretrained=False, img_size=size)
        except TypeError:  # convolutional nets take any size and no img_size argument
            pass
    return timm.create_model(name, pretrained=False)


# ----------------------------------------------------------------------------------------------------------------
# path/to/file.py:factory
# ----------------------------------------------------------------------------------------------------------------
@RESOLVERS.register("file")
def _resolve_file(spec: str, size: int | None) -> ModelSpec:
    path_text, sep, factory_name = spec.rpartition(":")
    if not sep or not path_text.endswith(".py"):
        raise ModelSpecError(
            f"model spec {spec!r} names a Python file but no factory; write it as path/to/file.py:factory "
            f"(a function or class in that file that returns a torch.nn.Module)"
        )
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise ModelSpecError(f"model spec {spec!r}: no such file {str(path)!r} (relative to {Path.cwd()})")
    if not factory_name.isidentifier():
        raise ModelSpecError(f"model spec {spec!r}: factory {factory_name!r} is not a Python name")
    module = _import_file(path, spec)
    factory = getattr(module, factory_name, None)
    if factory is None or not callable(factory):
        defined = [
            n
            for n, obj in vars(module).items()
            if callable(obj) and not n.startswith("_") and getattr(obj, "__module__", None) == module.__name__
        ]
        close = difflib.get_close_matches(factory_name, defined, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        what = "is not callable" if factory is not None else "is not defined"
        raise ModelSpecError(
            f"model spec {spec!r}: {factory_name!r} {what} in {path}.{hint} "
            f"Callables defined there: {', '.join(sorted(defined)) or '(none)'}"
        )
    with _on_sys_path(path.parent):
        try:
            model = factory()
        except Exception as error:
            raise ModelSpecError(
                f"model spec {spec!r}: calling {factory_name}() raised {type(error).__name__}: {error}"
            ) from error
    if not isinstance(model, nn.Module):
        raise ModelSpecError(
            f"model spec {spec!r}: {factory_name}() returned {type(model).__name__}, not a torch.nn.Module; "
            f"the factory must build and return the network"
        )
    user_inputs = getattr(module, "example_inputs", None)
    builder = _file_builder(model, user_inputs, size) if callable(user_inputs) else _inferred_builder(model, size)
    doc = (inspect.getdoc(factory) or "").splitlines()
    return ModelSpec(model=model, name=spec, input_builder=builder, description=doc[0] if doc else "")


def _inferred_builder(model: nn.Module, size: int | None) -> InputBuilder:
    return lambda s: infer_example_inputs(model, s if s is not None else size)


def _file_builder(model: nn.Module, fn: Callable[..., object], size: int | None) -> InputBuilder:
    def build(s: int | None) -> tuple:
        s = s if s is not None else size
        if s is None:
            parameters = list(inspect.signature(fn).parameters.values())
            needs_size = bool(parameters) and parameters[0].default is inspect.Parameter.empty
            result = fn(DEFAULT_FILE_SIZE) if needs_size else fn()
        else:
            result = fn(s)
        if isinstance(result, torch.Tensor):
            return (result,)
        if isinstance(result, (tuple, list)):
            return tuple(result)
        raise ModelSpecError(
            f"example_inputs() of {model.__class__.__module__} returned {type(result).__name__}; "
            f"it must return a tensor or a tuple of positional forward arguments"
        )

    return build


def _import_file(path: Path, spec: str) -> ModuleType:
    resolved = path.resolve()
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:10]
    stem = re.sub(r"\W", "_", resolved.stem)
    name = f"_binarize_model_{stem}_{digest}"
    loader_spec = importlib.util.spec_from_file_location(name, resolved)
    if loader_spec is None or loader_spec.loader is None:
        raise ModelSpecError(f"model spec {spec!r}: {path} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module
    try:
        with _on_sys_path(resolved.parent):
            loader_spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[name]
        raise ModelSpecError(f"model spec {spec!r}: importing {path} raised {type(error).__name__}: {error}") from error
    return module


@contextmanager
def _on_sys_path(folder: Path) -> Iterator[None]:
    """Let a model file import its neighbours while it is imported and its factory runs."""
    entry = str(folder)
    added = entry not in sys.path
    if added:
        sys.path.insert(0, entry)
    try:
        yield
    finally:
        if added and entry in sys.path:
            sys.path.remove(entry)
