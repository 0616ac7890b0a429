"""Lock files: one writer per run directory, dataset directory, experiment directory or text-cache file.

The lock of a target ``dir/name`` is the sibling file ``dir/.name.lock``. It holds the holder's pid, host,
process start time and command line (JSON) and is ``flock``-ed while held, so the kernel frees it when the
holder dies, however it dies (SIGKILL included): a lock file whose ``flock`` can be taken is stale, and the
new holder takes it over (:attr:`PathLock.took_over` names the dead holder). Where ``flock`` is not supported
(some network filesystems) a lock is stale when its holder ran on this host and that process is gone (pid no
longer running, or reused by a process that started later).

A second process that wants a held lock stops at once with :class:`LockBusy`, a :class:`SymcereError` that
names the target, the holder (pid, host, start, command) and the lock file. Locks are re-entrant within a
process (``build_dataset`` holds the dataset lock while ``write_tables`` takes it again) and the lock file is
removed on release. While a lock is held no other symcere process writes the target, so temporary files left
next to it by a killed writer are safe to delete (:func:`remove_leftovers`).
"""

from __future__ import annotations

import errno
import json
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from symcere.errors import SymcereError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

__all__ = ["LockBusy", "LockInfo", "PathLock", "lock_path", "locked", "remove_leftovers", "temp_leftovers"]

_HELD: dict[str, list[Any]] = {}  # lock file -> [count, fd, PathLock] of the locks this process holds
_HELD_GUARD = threading.Lock()
#: the temporary files of ``symcere.io.atomic_write`` (``.NAME.RANDOM.tmp``)
_IO_TEMP = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


class LockBusy(SymcereError):
    """Another live process holds the lock."""


@dataclass(frozen=True)
class LockInfo:
    """Who holds (or held) a lock."""

    pid: int
    host: str
    started: str = ""  # ISO time the lock was taken
    start_ticks: int | None = None  # the holder's process start time (/proc/PID/stat), to detect pid reuse
    command: str = ""

    def describe(self) -> str:
        from symcere.data.records import printable

        parts = [f"pid {self.pid} on host {printable(self.host)}"]
        if self.started:
            parts.append(f"since {self.started}")
        if self.command:
            parts.append(f"running `{printable(self.command, 160)}`")
        return ", ".join(parts)

    def alive(self) -> bool | None:
        """True / False when the holder ran on this host (running or not), None when that cannot be known."""
        if self.host != socket.gethostname():
            return None
        if not _pid_running(self.pid):
            return False
        if self.start_ticks is not None:
            ticks = _start_ticks(self.pid)
            if ticks is not None and ticks != self.start_ticks:
                return False  # the pid was reused by a later process
        return True


def lock_path(target: str | os.PathLike[str]) -> Path:
    """The lock file of ``target``: ``.NAME.lock`` next to it."""
    target = Path(os.path.abspath(target))
    return target.parent / f".{target.name}.lock"


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:  # the command name (field 2) may hold spaces and parentheses: split after its closing one
        return int(stat[stat.rindex(")") + 2 :].split()[19])
    except (ValueError, IndexError):
        return None


def _my_info() -> LockInfo:
    return LockInfo(
        pid=os.getpid(),
        host=socket.gethostname(),
        started=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        start_ticks=_start_ticks(os.getpid()),
        command=" ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300] if sys.argv else "",
    )


def _parse(text: str) -> LockInfo | None:
    try:
        raw = json.loads(text)
        return LockInfo(
            pid=int(raw["pid"]),
            host=str(raw.get("host", "")),
            started=str(raw.get("started", "")),
            start_ticks=None if raw.get("start_ticks") is None else int(raw["start_ticks"]),
            command=str(raw.get("command", "")),
        )
    except (ValueError, KeyError, TypeError):
        return None


def _read_fd(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def _write_fd(fd: int, info: LockInfo) -> None:
    data = json.dumps(info.__dict__).encode() + b"\n"
    os.lseek(fd, 0, os.SEEK_SET)
    os.ftruncate(fd, 0)
    os.write(fd, data)
    os.fsync(fd)


def _os_error(exc: OSError, what: str, path: Path) -> SymcereError:
    reason = exc.strerror or str(exc)
    hint = ""
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        hint = " (is the output location read-only?)"
    elif exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        hint = " (the disk is full)"
    return SymcereError(f"cannot create the lock file of the {what} {path.parent}: {reason}{hint}")


class PathLock:
    """An exclusive lock on ``target`` (see the module docstring); use as a context manager.

    ``what`` names the target in messages ("run directory", "dataset directory", ...).
    """

    def __init__(self, target: str | os.PathLike[str], what: str = "directory") -> None:
        self.target = Path(os.path.abspath(target))
        self.what = what
        self.path = lock_path(self.target)
        self.took_over: LockInfo | None = None  # the dead holder whose lock was taken over, if any
        self._held = False
        self._created: list[Path] = []  # parent directories the lock created (removed on release if empty)

    # -- acquire / release ---------------------------------------------------------------------------------
    def acquire(self, wait: float = 0.0) -> PathLock:
        """Take the lock; a lock held by a live process raises :class:`LockBusy` (after retrying for ``wait``
        seconds)."""
        deadline = time.monotonic() + wait
        while True:
            try:
                return self._acquire()
            except LockBusy:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.1)

    def _acquire(self) -> PathLock:
        key = str(self.path)
        with _HELD_GUARD:
            if key in _HELD:
                _HELD[key][0] += 1
                self._held = True
                return self
            try:
                self._make_parents()
                fd = self._take()
            except OSError as exc:
                self._remove_created()
                raise _os_error(exc, self.what, self.path) from None
            except BaseException:
                self._remove_created()
                raise
            _HELD[key] = [1, fd, self]
            self._held = True
        return self

    def _make_parents(self) -> None:
        missing = []
        d = self.path.parent
        while not d.exists() and d != d.parent:
            missing.append(d)
            d = d.parent
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._created = missing  # deepest first

    def _remove_created(self) -> None:
        for d in self._created:
            try:
                d.rmdir()
            except OSError:
                break
        self._created = []

    def _take(self) -> int:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                previous = self._lock_fd(fd)
                try:  # the file we locked must still be the one at the path (a holder unlinks it on release)
                    same = os.path.samestat(os.fstat(fd), os.stat(self.path))
                except FileNotFoundError:
                    same = False
                if not same:
                    os.close(fd)
                    continue
                if previous is not None:
                    self.took_over = previous
                _write_fd(fd, _my_info())
                return fd
            except BaseException:
                try:
                    os.close(fd)
                except OSError:
                    pass
                raise

    def _lock_fd(self, fd: int) -> LockInfo | None:
        """Lock ``fd`` or raise :class:`LockBusy`; returns the info of a dead holder found in the file."""
        text = _read_fd(fd)
        info = _parse(text) if text.strip() else None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return info  # the kernel freed the lock: any holder recorded in it is gone
            except BlockingIOError:
                raise self._busy(_parse(_read_fd(fd))) from None
            except OSError as exc:
                if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    raise
        # no flock here: decide from the recorded holder
        if info is None:
            if text.strip() and time.time() - os.fstat(fd).st_mtime < 60:
                raise self._busy(None)
            return None
        if info.pid == os.getpid() and info.host == socket.gethostname():
            return None
        if info.alive() is False:
            return info
        raise self._busy(info)

    def _busy(self, info: LockInfo | None) -> LockBusy:
        who = info.describe() if info is not None else "another process"
        gone = ""
        if info is not None and info.alive() is None:
            gone = f"; if that process is no longer running, delete {self.path}"
        return LockBusy(
            f"the {self.what} {self.target} is in use by {who}; wait for it to finish or stop it{gone} "
            "(symcere allows one writer at a time)"
        )

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        key = str(self.path)
        with _HELD_GUARD:
            entry = _HELD.get(key)
            if entry is None:
                return
            entry[0] -= 1
            if entry[0] > 0:
                return
            del _HELD[key]
            fd = entry[1]
            try:
                self.path.unlink()  # while still holding the flock: a waiter then re-checks the inode
            except OSError:
                pass
            os.close(fd)
            entry[2]._remove_created()  # directories made for the lock that stayed empty (a failed write)

    def __enter__(self) -> PathLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextmanager
def locked(target: str | os.PathLike[str], what: str = "directory", wait: float = 0.0) -> Iterator[PathLock]:
    """``with locked(run_dir, "run directory") as lock: ...``: hold the lock of ``target`` for the block
    (``wait``: seconds to retry a lock held by another process before :class:`LockBusy`)."""
    lock = PathLock(target, what).acquire(wait)
    try:
        yield lock
    finally:
        lock.release()


def holds(target: str | os.PathLike[str]) -> bool:
    """True when this process holds the lock of ``target``."""
    with _HELD_GUARD:
        return str(lock_path(target)) in _HELD


def temp_leftovers(directory: str | os.PathLike[str], names: Iterable[str] | None = None) -> list[Path]:
    """Temporary files of ``symcere.io.atomic_write`` in ``directory`` (of the files ``names`` only, if given)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    wanted = None if names is None else tuple(f".{n}." for n in names)
    out = []
    for p in directory.iterdir():
        if p.is_file() and _IO_TEMP.match(p.name) and (wanted is None or p.name.startswith(wanted)):
            out.append(p)
    return sorted(out)


def remove_leftovers(paths: Iterable[Path]) -> list[Path]:
    """Delete the given leftovers of killed writers (files or directories); returns those removed."""
    import shutil

    removed = []
    for p in paths:
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)
        except FileNotFoundError:
            continue
    return removed
