"""Atomic file writes: a reader never sees a half-written file, and an existing file is replaced only on success."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "decode_text", "write_text_atomic"]


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds, move it over ``path`` (``os.replace``).

    The folder is created if needed. If the block raises (or is interrupted), the temporary file is removed and
    ``path`` is left as it was.

    Examples:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "out.txt"
        >>> with atomic_path(target) as temporary:
        ...     _ = temporary.write_text("done")
        >>> target.read_text(), sorted(p.name for p in target.parent.iterdir())
        ('done', ['out.txt'])
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    try:
        yield temporary
        if temporary.exists():
            os.chmod(temporary, _new_file_mode())  # some writers create private (0600) files
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _new_file_mode() -> int:
    """The mode a new file gets under the current umask (``0o644`` under the usual ``022``)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_path`) and return the path."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)


def decode_text(data: bytes, what: str) -> str:
    r"""``data`` decoded as UTF-8 (a leading byte-order mark dropped), or ``ValueError`` naming the byte.

    Text files (recipes, experiment configs) are UTF-8. A file in another encoding (Latin-1, UTF-16) or a binary
    file (an image passed by mistake) is reported with the offending byte, its position and ``what`` the file was
    expected to be; the caller puts the file's name in front.

    Examples:
        >>> decode_text(b"name: caf\xc3\xa9", "a recipe")
        'name: café'
        >>> decode_text(b"name: caf\xe9", "a recipe")
        Traceback (most recent call last):
        ...
        ValueError: not a UTF-8 text file (byte 0xe9 at offset 9; perhaps Latin-1 or another 8-bit encoding); a recipe is UTF-8 YAML: save it as UTF-8, or check that this is the file you meant
    """
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            kind = "it starts with a UTF-16 byte-order mark"
        elif b"\x00" in data[:1024]:
            kind = "it looks like binary data"
        else:
            kind = "perhaps Latin-1 or another 8-bit encoding"
        raise ValueError(
            f"not a UTF-8 text file (byte 0x{data[exc.start]:02x} at offset {exc.start}; {kind}); "
            f"{what} is UTF-8 YAML: save it as UTF-8, or check that this is the file you meant"
        ) from None


def read_safetensors(path: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """The metadata and every tensor of a safetensors file.

    Raises:
        ValueError: the file cannot be read as safetensors (the message is the reader's).
    """
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 - not a dict
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ValueError(str(exc)) from None
    return metadata, tensors
