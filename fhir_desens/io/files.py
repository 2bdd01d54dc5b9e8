"""Files the command line reads and writes: regular files only, bounded, written whole or not at all.

* :func:`read_regular_file` opens without blocking (a FIFO never hangs the command), refuses
  anything that is not a regular file (``/dev/zero``, a pipe, a socket, a folder) and reads at most
  ``max_bytes``.
* :func:`check_output_path` is called before any work: an empty name, a folder, a missing folder or
  an existing non-regular file (``/dev/full``) is refused naming the option.
* :func:`write_atomically` writes a temporary file in the target's folder and renames it over the
  target, so readers see the old file or the new one, and nothing is left behind on failure.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from fhir_desens.errors import FhirFormatError, InputError

__all__ = ["check_output_path", "read_regular_file", "write_atomically"]

_ACCEPTED_OUTPUT = "a file in an existing folder"


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def read_regular_file(path: str | os.PathLike[str], *, max_bytes: int, field: str | None = None) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``; :class:`InputError` when it cannot be read
    or is not a regular file, :class:`FhirFormatError` when it is too large (both exit status 2)."""
    name = field or str(path)
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        raise InputError(name, f"cannot read file: {error.strerror or error}") from None
    with os.fdopen(descriptor, "rb", closefd=True) as handle:
        mode = os.fstat(handle.fileno())
        if not stat.S_ISREG(mode.st_mode):
            raise InputError(name, f"{path} is {_kind(mode.st_mode)}, not a regular file", "a regular file")
        if mode.st_size > max_bytes:
            raise FhirFormatError(f"{path}: file too large: {mode.st_size} bytes (limit {max_bytes} bytes)")
        try:
            data = handle.read(max_bytes + 1)
        except OSError as error:
            raise InputError(name, f"cannot read file: {error.strerror or error}") from None
    if len(data) > max_bytes:
        raise FhirFormatError(f"{path}: file too large (limit {max_bytes} bytes)")
    return data


def check_output_path(out: str, field: str = "--out") -> Path:
    """The file to write, checked before any work; symbolic links are followed to their target."""
    if not out or not out.strip():
        raise InputError(field, "an empty file name", _ACCEPTED_OUTPUT)
    if out.endswith(("/", os.sep)):
        raise InputError(field, f"{out} names a folder", _ACCEPTED_OUTPUT)
    target = Path(os.path.realpath(out))
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as error:
        raise InputError(field, f"cannot use {out}: {error.strerror or error}", _ACCEPTED_OUTPUT) from None
    if mode is not None and not stat.S_ISREG(mode):
        raise InputError(field, f"{out} is {_kind(mode)}; it is never replaced", _ACCEPTED_OUTPUT)
    folder = target.parent
    if not folder.is_dir():
        raise InputError(field, f"the folder {folder} does not exist", _ACCEPTED_OUTPUT)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(field, f"cannot write in the folder {folder}", _ACCEPTED_OUTPUT)
    return target


def _new_file_mode(target: Path) -> int:
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def write_atomically(data: bytes, out: str, field: str = "--out") -> None:
    """Write ``data`` to ``out`` whole or not at all (temporary file in the same folder, then rename)."""
    target = check_output_path(out, field)
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, _new_file_mode(target))
        os.replace(temporary, target)
    except OSError as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise InputError(field, f"cannot write {out}: {error.strerror or error}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
