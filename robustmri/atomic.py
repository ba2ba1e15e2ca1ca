"""Atomic file and folder writes: nothing half-written is ever left at the final path.

A file is written to a temporary sibling and moved into place with :func:`os.replace`, which is
atomic on POSIX file systems. A folder is built under a temporary sibling name and renamed at the
end; on error the temporary folder is removed. A write that fails for want of space leaves as an
``OSError(ENOSPC)`` naming the final path, whoever wrote it (torch's serializer says only
"unexpected pos"), so the command line turns it into one line and exit status 2.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


_WRITER_FAILURES = ("unexpected pos", "iostream error", "PytorchStreamWriter failed", "file write failed")
"""What torch's serializer says when a write fails part-way (a full disk, in practice): it raises a
RuntimeError that does not carry the operating system's error."""


def free_bytes(path: str | os.PathLike[str]) -> int | None:
    """Free bytes on the file system holding ``path`` (its nearest existing parent); None if unknown."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def as_disk_full(exc: BaseException, path: str | os.PathLike[str]) -> OSError | None:
    """``exc`` as an ``OSError(ENOSPC)`` naming ``path`` when it is a write that failed for want of
    space: an OSError with ENOSPC or EDQUOT, or torch's serializer failing part-way; None otherwise."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return exc if exc.filename is not None else OSError(exc.errno, exc.strerror or "No space left on device", str(path))
    if isinstance(exc, RuntimeError) and any(s in str(exc) for s in _WRITER_FAILURES):
        return OSError(errno.ENOSPC, "No space left on device (the write stopped part-way)", str(path))
    return None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the same folder as ``path``; move it onto ``path`` on success.

    The caller writes the whole file to the yielded path. Before the rename the file is flushed to
    disk and given the permissions of the user's umask. On an exception the temporary file is
    deleted and ``path`` is left untouched.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _settle(tmp, directory=False)
        os.replace(tmp, final)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        full = as_disk_full(exc, final)
        if full is not None and full is not exc:
            raise full from None
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _settle(path: Path, directory: bool) -> None:
    """Before the rename: give ``path`` the permissions the user's umask asks for (mkstemp and
    mkdtemp create 0600 / 0700), and flush a file to disk (fsync), so a crash right after the
    rename cannot leave an empty or partial file at the final path."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())
    if not directory:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (fsync before the rename, see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON to ``path`` atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_json_if_changed(path: str | os.PathLike[str], obj: Any) -> bool:
    """:func:`write_json_atomic` unless ``path`` already holds exactly that JSON text (then the file,
    its mtime included, is left alone, so reusing a cache changes nothing on disk). Returns True
    when it wrote."""
    text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
    try:
        if Path(path).read_text() == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    write_text_atomic(path, text)
    return True


def clean_stale_partials(folder: str | os.PathLike[str], name: str = "*", older_than_s: float = 600.0) -> int:
    """Remove what a killed process left of robustmri's own atomic writes directly in ``folder``:
    ``.<name>.<random>.partial`` folders (:func:`atomic_dir`), ``.<name>.<random>.tmp`` files
    (:func:`atomic_path`) and ``.<name>.old-<pid>`` folders, untouched for ``older_than_s`` seconds
    (a live writer's are never taken). ``name`` narrows it to one target (a glob). Returns how many."""
    import time

    root = Path(folder)
    if not root.is_dir():
        return 0
    now, removed = time.time(), 0
    for pattern in (f".{name}.*.partial", f".{name}.*.tmp", f".{name}.old-*"):
        for path in root.glob(pattern):
            try:
                if now - path.lstat().st_mtime <= older_than_s:
                    continue
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink()
                removed += 1
            except FileNotFoundError:
                pass
    return removed


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; rename it to ``path`` when the block succeeds.

    With ``overwrite=True`` an existing ``path`` is replaced (moved aside, then deleted, only after
    the new folder is in place). On an exception the temporary folder is deleted.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    try:
        yield tmp
        _settle(tmp, directory=True)
        old: Path | None = None
        if final.exists():
            if not overwrite:
                raise FileExistsError(final)
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        full = as_disk_full(exc, final)
        if full is not None:  # name the file as it would have been, not inside the removed temporary folder
            name = str(full.filename) if full.filename is not None else str(final)
            if name.startswith(str(tmp)):
                name = str(final) + name[len(str(tmp)):]
            if full is not exc or name != full.filename:
                raise OSError(full.errno, full.strerror, name) from None
        raise


@contextlib.contextmanager
def locked(path: str | os.PathLike[str]) -> Iterator[None]:
    """An exclusive advisory lock (``flock``) on ``path``, created if missing, for the read-modify-write
    of a file that processes share (tasks of one bench on one node or on a cluster's shared disk)."""
    import fcntl

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
