"""The container of packed exports: many tensors in a few safetensors blobs, with a compressed index.

A binarized network has hundreds of small tensors (a scale, a shift, a bias, an RPReLU table per layer). Stored
one safetensors entry each, their names and offsets in the header alone would add several percent to a small
model's file. So the tensors are concatenated per dtype into blobs (``values.uint8``, ``values.float32``, ...)
and the metadata field ``index`` holds, zlib-compressed and base64-encoded, a JSON list of ``[name, blob, offset,
shape, crc32]`` (offset in elements). ``checksums`` holds each blob's SHA-256; the per-tensor CRC-32 names what a
damaged blob has lost.
"""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor

from binarize._files import atomic_path, read_safetensors
from binarize.errors import BinarizeError

__all__ = ["ExportError", "compressed_json", "read_compressed_json", "read_container", "write_container"]


class ExportError(BinarizeError):
    """A model that cannot be exported, or a file that is not a readable packed export (the message says why)."""


def _bytes(tensor: Tensor) -> bytes:
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""


def compressed_json(value: Any) -> str:
    """``value`` as compact JSON, zlib-compressed and base64-encoded (a metadata field for large indexes)."""
    return base64.b64encode(zlib.compress(json.dumps(value, separators=(",", ":")).encode(), 9)).decode()


def read_compressed_json(text: str) -> Any:
    """The inverse of :func:`compressed_json`.

    Raises:
        ValueError: the text is not what :func:`compressed_json` writes.
    """
    try:
        return json.loads(zlib.decompress(base64.b64decode(text, validate=True)))
    except zlib.error as exc:
        raise ValueError(str(exc)) from None


def write_container(path: str | Path, tensors: Mapping[str, Tensor], metadata: Mapping[str, str]) -> Path:
    """Write ``tensors`` (any dtypes and shapes) and ``metadata`` atomically as one container file."""
    parts: dict[str, list[Tensor]] = {}
    sizes: dict[str, int] = {}
    index: list[list[Any]] = []
    for name, value in tensors.items():
        blob = "values." + str(value.dtype).removeprefix("torch.")
        flat = value.detach().cpu().contiguous().reshape(-1)
        offset = sizes.get(blob, 0)
        index.append([name, blob, offset, list(value.shape), zlib.crc32(_bytes(flat))])
        parts.setdefault(blob, []).append(flat)
        sizes[blob] = offset + flat.numel()
    blobs = {blob: torch.cat(chunks) for blob, chunks in parts.items()}
    checksums = {blob: hashlib.sha256(_bytes(value)).hexdigest() for blob, value in blobs.items()}
    fields = {**metadata, "index": compressed_json(index), "checksums": json.dumps(checksums)}
    target = Path(path)
    with atomic_path(target) as temporary:
        save_file(blobs, str(temporary), metadata=fields)
    return target


def read_container(path: str | Path, fmt: str) -> tuple[dict[str, Tensor], dict[str, str]]:
    """The tensors and metadata of a container file of format ``fmt``, checked.

    Raises:
        ExportError: a missing or unreadable file, another format, a broken index, or blobs whose bytes do not
            match their checksums (naming the tensors that changed).
    """
    source = Path(path)
    if not source.is_file():
        raise ExportError(f"no packed model at {str(source)!r}")
    try:
        metadata, blobs = read_safetensors(source)
    except ValueError as exc:
        raise ExportError(f"{source} is not a readable safetensors file ({exc})") from None
    if metadata.get("format") != fmt:
        raise ExportError(
            f"{source} is not a packed binarize export (format {metadata.get('format')!r}, expected {fmt!r}); "
            "write one with `binarize export`"
        )
    try:
        index = read_compressed_json(metadata["index"])
        checksums = json.loads(metadata["checksums"])
        entries = [(str(n), str(b), int(o), [int(s) for s in shape], int(c)) for n, b, o, shape, c in index]
    except (KeyError, ValueError, TypeError) as exc:
        raise ExportError(f"{source} is damaged: its tensor index cannot be read ({exc}); export the model again") from None
    if not isinstance(checksums, dict) or set(checksums) != set(blobs):
        raise ExportError(f"{source} is damaged: its blobs {sorted(blobs)} are not the ones it lists; export it again")
    tensors: dict[str, Tensor] = {}
    changed = []
    for name, blob, offset, shape, crc in entries:
        count = 1
        for size in shape:
            count *= size
        if blob not in blobs or offset < 0 or offset + count > blobs[blob].numel():
            raise ExportError(f"{source} is damaged: tensor {name} lies outside its blob; export the model again")
        tensors[name] = blobs[blob][offset:offset + count].reshape(shape)
        if zlib.crc32(_bytes(tensors[name])) != crc:
            changed.append(name)
    damaged = sorted(b for b, value in blobs.items() if hashlib.sha256(_bytes(value)).hexdigest() != checksums[b])
    if damaged or changed:
        from binarize.training.checkpoint import listed_names

        where = listed_names(changed) if changed else listed_names(damaged)
        raise ExportError(f"{source} is damaged: data that does not match the stored checksum in {where}; export "
                          "the model again")
    return tensors, metadata
