"""Layer options a recipe may set for a binarized layer, and their validation.

The options are the keyword arguments of ``BinaryX.from_float`` (see :mod:`binarize.nn`):

=================== ======================================================== ===========
option              allowed values                                           default
=================== ======================================================== ===========
``weight_binarizer`` a binarizer name, ``{name: ..., **kwargs}`` or ``null`` ``null``
``input_binarizer``  a binarizer name, ``{name: ..., **kwargs}`` or ``null`` ``null``
``scale``            a scale name, ``{name: ..., **kwargs}`` or ``null``     ``null``
``scale_gradient``   ``true`` / ``false`` (gradient carries the scale)         ``true``
``input_shift``      ``true`` / ``false``                                    ``false``
``activation``       ``null`` or an activation name (``rprelu``, ``prelu``)  ``null``
``shortcut``         ``false``, ``true``, ``auto``                           ``false``
``pad_value``        a number or ``null`` (zeros, as torch pads)             ``null``
``fold_bias``        ``true`` / ``false`` (needs ``activation: rprelu``)       ``false``
``timestep_aware``   ``true``, ``false``, ``input_shift``, ``activation``     ``false``
=================== ======================================================== ===========

``null`` means "off" (a full-precision weight or input, no scale, ...). Binarizer and scale names are checked
against :data:`binarize.binarizers.BINARIZERS` and :data:`binarize.scaling.SCALES`, and their keyword arguments
against the registered class's signature. Validators live in the :data:`OPTIONS` registry, so a plugin can add a
layer option without editing this module.

An option added after recipes were first written and hashed is listed in :data:`IMPLICIT_DEFAULTS` with the value a
recipe that does not state it means, its layer default (``scale_gradient: true``). The canonical form of a recipe's
resolved defaults leaves it out while it holds that value (:func:`canonical_defaults`), so a recipe that states it
at its default equals, and hashes as, the recipe written before the option existed: every such recipe, and every
checkpoint that stores one, keeps its hash, and the layers it builds get the default.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

from binarize._registry import Registry
from binarize.nn.layers import OPTION_DEFAULTS, TIMESTEP_PARTS
from binarize.recipe.source import Source, describe_value, did_you_mean

__all__ = [
    "IMPLICIT_DEFAULTS",
    "OPTIONS",
    "RECIPE_OPTION_DEFAULTS",
    "OptionValidator",
    "canonical_defaults",
    "is_plain_data",
    "validate_options",
]

#: ``validator(value, source, container, key) -> canonical value``; raises :class:`RecipeError`.
OptionValidator = Callable[[Any, Source, Any, str], Any]

#: Layer option name -> validator.
OPTIONS: Registry[OptionValidator] = Registry("layer option")


def is_plain_data(value: object) -> bool:
    """True for YAML/JSON plain data: None, bool, int, float, str and lists / string-keyed mappings of them."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return not (isinstance(value, float) and not math.isfinite(value))
    if isinstance(value, (list, tuple)):
        return all(is_plain_data(v) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and is_plain_data(v) for k, v in value.items())
    return False


def _plain(value: Any) -> Any:
    """A copy of plain data as built-in dicts and lists (drops the line bookkeeping)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _registry_spec(
    kind: str, registry_names: Callable[[], list[str]], registry_get: Callable[[str], Any]
) -> OptionValidator:
    """A validator for a ``name`` / ``{name: ..., **kwargs}`` / ``null`` spec resolved through a registry."""

    def validate(value: Any, src: Source, container: Any, key: str) -> Any:
        if value is None:
            return None
        if isinstance(value, str):
            name, kwargs = value, {}
        elif isinstance(value, Mapping):
            if "name" not in value:
                raise src.error(
                    f"{key!r} mapping needs a 'name' key (the {kind}), got keys {sorted(map(str, value))}; "
                    f"write e.g. `{key}: {{name: {(registry_names() or ['...'])[0]}}}`",
                    container,
                    key,
                )
            name = value["name"]
            kwargs = {k: v for k, v in value.items() if k != "name"}
            if not isinstance(name, str):
                raise src.error(f"{key!r}: the {kind} name must be a string, got {describe_value(name)}", value, "name")
        else:
            raise src.error(
                f"{key!r} must be a {kind} name, a mapping {{name: ..., ...}} or null, got {describe_value(value)}",
                container,
                key,
            )
        known = registry_names()
        if name not in known:
            raise src.error(
                f"unknown {kind} {name!r} for {key!r}.{did_you_mean(name, known)} "
                f"Known {kind}s: {', '.join(known)}",
                value if isinstance(value, Mapping) else container,
                "name" if isinstance(value, Mapping) else key,
            )
        for arg, arg_value in kwargs.items():
            if not isinstance(arg, str) or not is_plain_data(arg_value):
                raise src.error(
                    f"{key!r}: argument {arg!r} of {kind} {name!r} must be plain data "
                    f"(null, bool, number, string, list, mapping), got {describe_value(arg_value)}",
                    value,
                    arg,
                )
        _check_kwargs(kind, name, registry_get(name), kwargs, src, value, key)
        return {"name": name, **_plain(kwargs)} if kwargs else name

    return validate


def _check_kwargs(
    kind: str, name: str, target: Any, kwargs: dict[str, Any], src: Source, container: Any, key: str
) -> None:
    """Refuse keyword arguments that the registered class does not accept (values are checked when it is built)."""
    if not kwargs:
        return
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):  # builtins without a signature: let the constructor judge later
        return
    params = signature.parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    # Keyword-only arguments, and positional ones with a default: required positional arguments (a scale's
    # ``weight`` and ``out_dim``) are supplied by the layer, never by a recipe.
    accepted = [
        n
        for n, p in params.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
        or (p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and p.default is not inspect.Parameter.empty)
    ]
    for arg in kwargs:
        if arg not in accepted:
            raise src.error(
                f"{key!r}: {kind} {name!r} has no argument {arg!r}.{did_you_mean(arg, accepted)} "
                f"Its arguments: {', '.join(accepted) or '(none)'}",
                container,
                arg,
            )


def _binarizer_names() -> list[str]:
    from binarize.binarizers import BINARIZERS

    return BINARIZERS.names()


def _binarizer_get(name: str) -> Any:
    from binarize.binarizers import BINARIZERS

    return BINARIZERS.get(name)


def _scale_names() -> list[str]:
    from binarize.scaling import SCALES

    return SCALES.names()


def _scale_get(name: str) -> Any:
    from binarize.scaling import SCALES

    return SCALES.get(name)


def _choice(allowed: tuple[Any, ...], shown: str) -> OptionValidator:
    def validate(value: Any, src: Source, container: Any, key: str) -> Any:
        # ``True == 1`` in Python: compare types too, so that ``shortcut: 1`` is refused rather than read as true.
        for option in allowed:
            if type(value) is type(option) and value == option:
                return value
        hint = did_you_mean(value, [a for a in allowed if isinstance(a, str)]) if isinstance(value, str) else ""
        raise src.error(f"{key!r} must be one of {shown}, got {describe_value(value)}.{hint}", container, key)

    return validate


def _validate_bool(value: Any, src: Source, container: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise src.error(f"{key!r} must be true or false, got {describe_value(value)}", container, key)
    return value


def _validate_activation(value: Any, src: Source, container: Any, key: str) -> str | None:
    from binarize.nn import ACTIVATIONS

    allowed = (None, *ACTIVATIONS.names())
    return _choice(allowed, ", ".join("null" if a is None else repr(a) for a in allowed))(value, src, container, key)


def _validate_pad_value(value: Any, src: Source, container: Any, key: str) -> float | None:
    # ``0.0`` is a real padding value: test for None explicitly, never with ``or`` (see peers.md, bitorch).
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise src.error(
            f"{key!r} must be a finite number (e.g. -1.0, 0.0, 1.0) or null for zero padding, "
            f"got {describe_value(value)}",
            container,
            key,
        )
    return float(value)


OPTIONS.register("weight_binarizer", _registry_spec("binarizer", _binarizer_names, _binarizer_get))
OPTIONS.register("input_binarizer", _registry_spec("binarizer", _binarizer_names, _binarizer_get))
OPTIONS.register("scale", _registry_spec("scale", _scale_names, _scale_get))
OPTIONS.register("scale_gradient", _validate_bool)
OPTIONS.register("input_shift", _validate_bool)
OPTIONS.register("activation", _validate_activation)
OPTIONS.register("shortcut", _choice((False, True, "auto"), "false, true, 'auto'"))
OPTIONS.register("pad_value", _validate_pad_value)
OPTIONS.register("fold_bias", _validate_bool)
OPTIONS.register(
    "timestep_aware",
    _choice((False, True, *TIMESTEP_PARTS), "true, false, " + ", ".join(repr(p) for p in TIMESTEP_PARTS)),
)

#: Every recipe layer option with its default. They are the binary layers' options (:data:`binarize.nn.OPTION_DEFAULTS`)
#: except that recipes write ``timestep_aware`` where layers take ``timestep_groups=K`` and ``timestep_parts``: the
#: number of groups comes from the recipe's ``timestep`` section, and ``timestep_aware: true`` makes both the input
#: shift and the activation timestep-aware, ``input_shift`` or ``activation`` only that one.
RECIPE_OPTION_DEFAULTS: dict[str, Any] = {
    **{name: value for name, value in OPTION_DEFAULTS.items() if name not in ("timestep_groups", "timestep_parts")},
    "timestep_aware": False,
}


#: Options added after recipes were first hashed -> the value a recipe that does not state the option means (see the
#: module docstring). Each value is the option's layer default, so leaving it out never changes what a recipe computes.
IMPLICIT_DEFAULTS: dict[str, Any] = {"scale_gradient": True}


def canonical_defaults(defaults: Mapping[str, Any]) -> dict[str, Any]:
    """A recipe's resolved defaults in canonical form: without the :data:`IMPLICIT_DEFAULTS` options that hold their
    implicit value (the form, and so the hash, of a recipe written before those options existed).

    Only resolved defaults may drop them: a rule states an option to override the defaults, so a rule's
    ``scale_gradient: true`` stays as written.

    Examples:
        >>> canonical_defaults({"weight_binarizer": "ste", "scale_gradient": True})
        {'weight_binarizer': 'ste'}
        >>> canonical_defaults({"scale_gradient": False})
        {'scale_gradient': False}
    """
    return {
        k: v
        for k, v in defaults.items()
        if not (k in IMPLICIT_DEFAULTS and type(v) is type(IMPLICIT_DEFAULTS[k]) and v == IMPLICIT_DEFAULTS[k])
    }


def validate_options(
    data: Any, src: Source = Source(), *, where: str = "options", container: Any = None, key: Any = None
) -> dict[str, Any]:
    """Check a mapping of layer options and return it in canonical form (a plain ``dict``).

    Canonical form: a binarizer or scale spec without arguments becomes its name; ``pad_value`` becomes a float.

    Args:
        data: the mapping (``None`` counts as empty).
        src: where it was read from, for error messages.
        where: what the mapping is (``"defaults"``, ``"rules[2].binarize"``), for error messages.
        container: the mapping that holds ``data`` (for the line of a type error).
        key: the key of ``data`` inside ``container``.

    Raises:
        RecipeError: an unknown option (with a suggestion), or a value that is not allowed.
    """
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise src.error(
            f"{where} must be a mapping of layer options ({', '.join(OPTIONS.names())}), got {describe_value(data)}",
            container if container is not None else data,
            key,
        )
    out: dict[str, Any] = {}
    known = OPTIONS.names()
    for name, value in data.items():
        if name not in OPTIONS:
            raise src.error(
                f"unknown layer option {name!r} in {where}.{did_you_mean(name, known)} "
                f"Allowed options: {', '.join(known)}",
                data,
                name,
            )
        out[name] = OPTIONS.get(name)(value, src, data, name)
    return out

