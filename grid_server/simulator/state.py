"""Crash-safe JSON state files for the durable simulated households.

A save writes a temporary file next to the state file, fsyncs it, renames it
over the state file and fsyncs the folder: after a power cut or kill -9 at any
instant the state file is either the previous save or this one, never a mix.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


class StateFileError(RuntimeError):
    """A state file cannot be read; the message names the file and the fault."""


def temporary_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


def write_atomic(path: Path, data: Any) -> None:
    """Replace ``path`` with ``data`` as JSON, all or nothing."""
    text = json.dumps(data, separators=(",", ":"), sort_keys=True)
    temporary = temporary_path(path)
    # O_TRUNC: a temporary file left by a crash mid-write is simply overwritten.
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            descriptor = -1
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    finally:
        if descriptor >= 0:
            os.close(descriptor)
    os.replace(temporary, path)
    # The rename itself must reach the disk too.
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def read_state(path: Path) -> dict[str, Any] | None:
    """The saved object, or None when there is no state file yet.

    A temporary file left by a crash before its rename is ignored: the state
    file still holds the last complete save. Anything unreadable raises
    :class:`StateFileError` and the file is left as it is for a person to look at.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise StateFileError(f"cannot read the state file {path}: {err}") from err
    try:
        data = json.loads(text)
    except ValueError as err:
        raise StateFileError(
            f"the state file {path} is corrupt ({err}); it was left unchanged: "
            "restore it or move it away to start new households"
        ) from err
    if not isinstance(data, dict):
        raise StateFileError(f"the state file {path} does not hold a JSON object")
    return data


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold ``path`` locked so only one process uses a state folder at a time.

    The kernel releases the lock when the holder dies, even by SIGKILL, so a
    restart right after a crash is never locked out.
    """
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            raise StateFileError(
                f"{path} is locked by another process: run one households process per state folder"
            ) from err
        yield
    finally:
        os.close(descriptor)
