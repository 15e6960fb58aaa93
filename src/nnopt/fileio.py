"""Atomic file writes (temp file in the same directory + fsync + rename): nothing is ever half-written.
And the run directory's lock: one nnopt command writes a run directory at a time."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from nnopt.errors import UsageError, param

try:
    import fcntl
except ImportError:  # not a POSIX system: run directories are not locked
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".nnopt.lock"  # in the run directory while a command writes it; holds the writer's pid
_held: dict[str, int] = {}  # run directories this process holds -> nesting depth (a command inside a command)
_held_guard = threading.Lock()


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call `write(fh)` on a binary temp file, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n")


def atomic_write_jsonl(path: str | Path, rows: Iterable[Any]) -> Path:
    return atomic_write_text(path, "".join(json.dumps(r, default=_jsonable) + "\n" for r in rows))


def make_run_dir(path: str | Path) -> Path:
    """Create a run directory and prove it is writable, before any work starts."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"cannot write to run directory {path} ({exc.strerror}); choose another "
                         f"{param('out')}") from None
    return path


def holds_run_dir(path: str | Path) -> bool:
    """Whether this process holds the lock of run directory `path` or of a directory above it (automl's stages)."""
    real = Path(os.path.realpath(path))
    with _held_guard:
        return any(str(p) in _held for p in (real, *real.parents))


@contextlib.contextmanager
def lock_run_dir(path: str | Path) -> Iterator[Path]:
    """Hold run directory `path` (created if missing) for this process while the block runs; another process
    asking for it meanwhile gets a UsageError naming this one's pid.

    An flock on DIR/.nnopt.lock: the kernel drops it when the process ends, however it ends, so the lock of a
    killed process is free for the next command, which takes the file over. Processes this one starts
    (workers, ranks) write the run directory under this lock and do not take it themselves. Taken again by the
    process that holds it (a command inside a command), it is a no-op. Directories it created and that are
    still empty at the end (a command that failed on bad input) are removed again."""
    path = Path(path)
    key = os.path.realpath(path)
    with _held_guard:
        nested = key in _held
        if nested:
            _held[key] += 1
    if nested:
        try:
            yield path
        finally:
            with _held_guard:
                _held[key] -= 1
        return
    created = [p for p in (path, *path.parents) if not p.exists()]
    make_run_dir(path)
    fd = _acquire(path / LOCK_NAME, path)
    with _held_guard:
        _held[key] = 1
    try:
        yield path
    finally:
        with _held_guard:
            del _held[key]
        _release(path / LOCK_NAME, fd, created)


def _acquire(lock: Path, run_dir: Path) -> int | None:
    if fcntl is None:
        return None
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except FileNotFoundError:  # the directory was removed by a command that created it and failed
            make_run_dir(run_dir)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            if holder and not pid_alive(holder):  # its forked workers inherited the lock and outlive it
                raise UsageError(f"{run_dir} is in use by processes that nnopt process {holder} started; it has "
                                 "ended, and they stop when their work is done (a study's workers after their "
                                 f"trials): wait for them or use another {param('out')}") from None
            who = f"pid {holder}" if holder else "pid unknown"
            raise UsageError(f"{run_dir} is in use by another nnopt process ({who}); wait for it to finish or use "
                             f"another {param('out')}") from None
        except OSError:  # a file system without locks (some network mounts): write unlocked, as before
            os.close(fd)
            with contextlib.suppress(OSError):
                lock.unlink()
            return None
        # The holder before us may have removed the file between our open and our lock: then the lock is on a
        # file nobody else will open; start again on the file at the path.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)


def _release(lock: Path, fd: int | None, created: list[Path]) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            lock.unlink()  # while still locked, so no one can take the file we are about to let go
    for directory in created:  # innermost first; stops at the first that is not empty
        try:
            directory.rmdir()
        except OSError:
            break
    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)  # for every copy of the descriptor, also those forked workers still hold
        os.close(fd)


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this machine (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: it exists
        return True
    return True


def _read_pid(fd: int) -> int | None:
    for _ in range(20):  # the holder writes its pid just after locking: an empty file is a moment old
        try:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        except OSError:
            return None
        if text.isdigit():
            return int(text)
        time.sleep(0.01)
    return None


def slug(text: str) -> str:
    """A name for a default run directory: the stem of a path, or the name itself."""
    stem = Path(str(text)).stem if ("/" in str(text) or "." in str(text)) else str(text)
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in stem) or "data"


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    return str(obj)
