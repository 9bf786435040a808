"""Safe file operations: nothing a user typed is lost, every write is atomic, one writer per output.

The rules (docs/safety.md):

- **Replace only what is ours.** An existing path may be replaced only when it is empty or
  something this package wrote and recognises by its own manifest: a bundle
  (``manifest.json``), a toy world (``world.json``), an HTML report (its generator tag) or a
  work folder (a ``.semheat-work`` marker). :func:`check_replaceable` refuses anything else.
- **Atomic writes.** Files are written to a hidden temporary sibling, flushed and renamed into
  place (:func:`atomic_write`); directories are built in a hidden sibling and swapped in by
  :func:`publish_dir`. A crash between the two renames of a swap leaves the old version in a
  hidden ``.NAME.old-*`` sibling, which :func:`recover` puts back; stale temporaries this package
  left are removed by it too. So a path always holds the old version or the new one.
- **One writer per output.** :func:`writer_lock` takes an exclusive lock on the output for the
  whole run; a second run refuses at once, naming the first.
- **Regular files only.** Readers refuse FIFOs, devices and sockets before opening them
  (:func:`check_regular`, :func:`read_bytes`), so a damaged bundle cannot hang a command.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from .errors import SemheatError

WORK_MARKER = ".semheat-work"  # inside a work folder (OUT.work/) this package created
TEMP_MARKER = ".semheat-temp"  # inside a temporary directory this package is building
REPORT_TAG = '<meta name="generator" content="semheat_widgets report">'
BUNDLE_FORMAT = "semheat-bundle"
WORLD_FORMAT = "semheat-toy-world"
FAMILY_FORMAT = "semheat-fault-family"  # a fault family's family.json (zoo.family_file)
_SNIFF_BYTES = 4096


# -- reading -----------------------------------------------------------------------------------
def check_regular(path, what: str = "file") -> Path:
    """``path`` if it is a regular file (symlinks followed); a one-line error otherwise."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError as exc:
        raise _os_error(path, exc, what) from None
    if not stat.S_ISREG(st.st_mode):
        raise SemheatError(f"{path} is not a regular file ({_file_kind(st.st_mode)}); "
                           f"refusing to open it")
    return path


def _os_error(path: Path, exc: OSError, what: str) -> SemheatError:
    if isinstance(exc, FileNotFoundError):
        return SemheatError(f"{path}: no such {what}")
    if isinstance(exc, PermissionError):
        return SemheatError(f"{path}: permission denied")
    return SemheatError(f"{path}: cannot read ({exc.strerror or exc})")


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a plain file"


def read_bytes(path, what: str = "file", limit: int | None = None) -> bytes:
    """The bytes of a regular file, opened without blocking (a FIFO can never hang this)."""
    path = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise _os_error(path, exc, what) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SemheatError(f"{path} is not a regular file ({_file_kind(st.st_mode)}); "
                               f"refusing to read it")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read() if limit is None else f.read(limit)
    except OSError as exc:
        raise SemheatError(f"{path}: cannot read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


def read_text(path, what: str = "file") -> str:
    """A regular file decoded as UTF-8, with a one-line error for anything else."""
    data = read_bytes(path, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SemheatError(f"{path} is not UTF-8 text (byte {exc.start})") from None


def _reject_constant(name: str):
    raise ValueError(f"non-finite number {name}")


def read_json(path, what: str = "file"):
    """Strict JSON from a regular file: UTF-8, no NaN/Infinity, no absurd nesting."""
    return parse_json(read_bytes(path, what), path, what)


def parse_json(data: bytes, path, what: str = "file"):
    """Strict JSON from the bytes of ``path`` (see :func:`read_json`)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SemheatError(f"{path} is not UTF-8 text (byte {exc.start})") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise SemheatError(f"{path} is nested too deeply to be a {what}") from None
    except ValueError as exc:  # JSONDecodeError and the non-finite constants
        raise SemheatError(f"{path} is not valid JSON: {str(exc).splitlines()[0]}") from None


# -- recognising what is ours ------------------------------------------------------------------
def owned_kind(path) -> str | None:
    """What ``path`` is, as far as replacing it goes.

    ``"missing"``, ``"empty"`` (an empty directory), ``"bundle"``, ``"toy-world"``,
    ``"report"``, ``"work"``; ``None`` for anything else (never replaced).
    """
    path = Path(path)
    try:
        st = path.lstat()
    except FileNotFoundError:
        return "missing"
    except OSError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return None  # a link points at something of the user's: never replace it
    if stat.S_ISDIR(st.st_mode):
        try:
            entries = os.listdir(path)
        except OSError:
            return None
        if not entries:
            return "empty"
        if _json_format(path / "manifest.json") == BUNDLE_FORMAT:
            return "bundle"
        if _json_format(path / "world.json") == WORLD_FORMAT:
            return "toy-world"
        if (path / WORK_MARKER).is_file():
            return "work"
        if _json_format(path / "family.json") == FAMILY_FORMAT:
            return "family"
        return None
    if stat.S_ISREG(st.st_mode) and path.suffix.lower() in (".html", ".htm"):
        try:
            head = read_bytes(path, limit=_SNIFF_BYTES)
        except SemheatError:
            return None
        return "report" if REPORT_TAG.encode() in head else None
    return None


def _json_format(path: Path):
    try:
        st = path.lstat()
        if not stat.S_ISREG(st.st_mode) or st.st_size > 64 * 2**20:
            return None
        obj = json.loads(read_text(path))
    except (OSError, SemheatError, ValueError, RecursionError):
        return None
    return obj.get("format") if isinstance(obj, dict) else None


KIND_WORDS = {"bundle": "a semheat bundle", "toy-world": "a semheat toy world",
              "report": "a semheat HTML report", "work": "a semheat work folder",
              "family": "a semheat fault family"}


def check_replaceable(path, allowed: tuple[str, ...], what: str) -> str:
    """Refuse (one line) unless ``path`` is missing, empty, or one of the ``allowed`` kinds of
    thing this package wrote. Returns the kind found."""
    kind = owned_kind(path)
    if kind in ("missing", "empty") or kind in allowed:
        return kind
    found = KIND_WORDS.get(kind, "not something semheat_widgets wrote")
    raise SemheatError(f"{path} exists and is {found}; refusing to replace it with {what} "
                       f"(choose another path, or move it away yourself)")


def remove_owned(path, allowed: tuple[str, ...]) -> None:
    """Delete ``path`` only if it is one of the ``allowed`` kinds of thing this package wrote
    (or an empty folder); anything else raises and stays untouched."""
    kind = check_replaceable(path, allowed, "nothing")
    if kind == "missing":
        return
    if kind == "report":
        Path(path).unlink()
    else:
        shutil.rmtree(path)


def make_work_dir(path) -> Path:
    """Create (or reuse) a work folder this package owns, marked as such."""
    path = Path(path)
    kind = owned_kind(path)
    if kind not in ("missing", "empty", "work"):
        raise SemheatError(f"{path} exists and is not a semheat work folder; refusing to use it "
                           f"(move it away, or choose another --out)")
    path.mkdir(parents=True, exist_ok=True)
    (path / WORK_MARKER).touch()
    return path


# -- a full disk -------------------------------------------------------------------------------
def is_space_error(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk (or the user's quota) is full, whatever raised it (an
    ``OSError``, Arrow, or safetensors, which only says so in words)."""
    import errno

    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    return "No space left on device" in text or "Disk quota exceeded" in text


def _size(nbytes: int | None) -> str:
    if nbytes is None:
        return "an unknown amount"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} bytes"


def _mount_of(path: Path) -> tuple[str, str]:
    """(device, mount point) of the file system holding ``path`` (from /proc/mounts)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    best = ("?", "/")
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 2:
                    continue
                mount = parts[1].replace("\\040", " ")
                if (str(path) == mount or str(path).startswith(mount.rstrip("/") + "/")) and \
                        len(mount) >= len(best[1]):
                    best = (parts[0], mount)
    except OSError:
        pass
    return best


def disk_full(path, needed: int | None = None) -> SemheatError:
    """One line for a full disk: the device, what is free, and roughly what is needed."""
    path = Path(path)
    probe = Path(os.path.abspath(path))
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        st = os.statvfs(probe)
        free = st.f_bavail * st.f_frsize
    except OSError:
        free = None
    device, mount = _mount_of(probe)
    need = f"; this file needs about {_size(needed)}" if needed else ""
    return SemheatError(f"no space left on {device} (mounted at {mount}) while writing {path}: "
                        f"{_size(free)} free{need}; free some space or write elsewhere")


@contextmanager
def space_errors(path, needed: int | None = None):
    """Turn a full disk inside the block into :func:`disk_full`'s one line about ``path``."""
    try:
        yield
    except SemheatError:
        raise
    except Exception as exc:
        if is_space_error(exc):
            raise disk_full(path, needed) from None
        raise


def preallocate(path, nbytes: int) -> None:
    """Reserve ``nbytes`` for the file ``path`` now (``posix_fallocate``), so that writing it
    through a memory map can never fault on a full disk (a SIGBUS kills the process without a
    word); a full disk raises :func:`disk_full`'s line instead. File systems that cannot
    preallocate are left as they are."""
    import errno

    if nbytes <= 0 or not hasattr(os, "posix_fallocate"):
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, nbytes)
    except OSError as exc:
        if is_space_error(exc):
            raise disk_full(path, nbytes) from None
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
    finally:
        os.close(fd)


def open_npy_memmap(path, dtype, shape):
    """A new ``.npy`` file at ``path`` opened as a writable memory map, its whole size
    reserved on disk first (:func:`preallocate`); on a full disk the file is removed and one
    line raised."""
    import numpy as np

    path = Path(path)
    try:
        with space_errors(path):
            array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    try:
        preallocate(path, os.path.getsize(path))
    except BaseException:
        del array
        path.unlink(missing_ok=True)
        raise
    return array


# -- atomic writes -----------------------------------------------------------------------------
def _sibling(path: Path, tag: str) -> Path:
    return path.parent / f".{path.name}.{tag}-{uuid.uuid4().hex[:8]}"


def atomic_write(path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` through a temporary sibling and an atomic rename."""
    path = Path(path)
    tmp = _sibling(path, "tmp")
    raw = data.encode("utf-8") if isinstance(data, str) else data
    try:
        with space_errors(path, len(raw)), open(tmp, "xb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def temp_dir_for(target) -> Path:
    """A fresh hidden sibling directory in which to build ``target`` (marked as ours)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(target, "tmp")
    tmp.mkdir()
    (tmp / TEMP_MARKER).touch()
    return tmp


def publish_dir(tmp, target, allowed: tuple[str, ...], what: str,
                _between=None) -> Path:
    """Swap the finished directory ``tmp`` in at ``target``: old or new, never neither.

    ``target`` may only be missing, empty, or one of ``allowed``. The old version is moved to a
    hidden ``.NAME.old-*`` sibling first and removed once the new one is in place; a crash in
    between is undone by :func:`recover`. ``_between`` is a test hook called between renames.
    """
    tmp, target = Path(tmp), Path(target)
    (tmp / TEMP_MARKER).unlink(missing_ok=True)
    kind = check_replaceable(target, allowed, what)
    if kind == "missing":
        os.replace(tmp, target)
        return target
    old = _sibling(target, "old")
    os.replace(target, old)
    if _between is not None:
        _between()
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def _siblings(target: Path, tag: str) -> list[Path]:
    prefix = f".{target.name}.{tag}-"
    try:
        names = os.listdir(target.parent)
    except OSError:
        return []
    found = [target.parent / n for n in names if n.startswith(prefix) and len(n) == len(prefix) + 8]
    return sorted(found, key=lambda p: p.lstat().st_mtime if p.exists() else 0)


def needs_recovery(target) -> bool:
    target = Path(target)
    return bool(_siblings(target, "old") or _siblings(target, "tmp"))


def recover(target) -> list[str]:
    """Finish what an interrupted write of ``target`` left: put a pending old version back
    where the new one never arrived, and remove this package's stale temporaries.

    Call it while holding ``target``'s writer lock. Returns what was done, in words.
    """
    target = Path(target)
    done = []
    olds = [p for p in _siblings(target, "old") if owned_kind(p) in
            ("bundle", "toy-world", "report", "empty")]
    if olds and owned_kind(target) in ("missing", "empty"):
        if target.is_dir():
            target.rmdir()
        os.replace(olds[-1], target)
        done.append(f"restored {target} from an interrupted save")
        olds = olds[:-1]
    for p in olds:
        _remove(p)
        done.append(f"removed {p.name}")
    for p in _siblings(target, "tmp"):
        # ours: a temporary file, or a directory marked as ours (or still empty: a kill can
        # fall between creating it and marking it; or a finished bundle or world whose marker
        # was taken off just before a kill stopped its publication)
        if p.is_file() or p.is_dir() and ((p / TEMP_MARKER).exists() or not any(p.iterdir())
                                          or owned_kind(p) in ("bundle", "toy-world")):
            _remove(p)
            done.append(f"removed {p.name}")
    return done


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


def recover_for_reading(target, timeout: float = 30.0) -> None:
    """Before reading ``target``: if an interrupted write left it missing, restore it (under
    the writer lock, so a live writer is never disturbed)."""
    target = Path(target)
    if target.exists() or not _siblings(target, "old"):
        return
    with writer_lock(target, wait=timeout):
        recover(target)


# -- one writer per output ---------------------------------------------------------------------
_held: dict[str, list] = {}  # lock path -> [FileLock, depth, thread id] held by this process
_held_guard = threading.Lock()


def _lock_paths(target: Path) -> tuple[Path, Path]:
    target = Path(os.path.abspath(target))
    return (target.parent / f".{target.name}.lock", target.parent / f".{target.name}.lock.json")


def _describe_owner(info_path: Path) -> str:
    try:
        info = json.loads(info_path.read_text())
        return (f"pid {info['pid']} on {info['host']}, `{info['command']}`, since "
                f"{info['since']}")
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def _busy(target: Path, info_path: Path) -> SemheatError:
    return SemheatError(f"{target} is being written by another run ({_describe_owner(info_path)});"
                        f" wait for it to finish or choose another output")


@contextmanager
def writer_lock(target, wait: float = 0.0, command: str | None = None):
    """Hold the exclusive writer lock of ``target`` for the ``with`` block.

    Re-entrant within one thread (a build that saves bundles holds it once). Another holder —
    another process, or another thread of this one — makes this raise at once (or after
    ``wait`` seconds) with a line naming it. The lock lives in a hidden ``.NAME.lock`` sibling
    (released by the operating system if the holder dies); ``.NAME.lock.json`` says who holds it.
    """
    from filelock import FileLock, Timeout

    target = Path(target)
    lock_path, info_path = _lock_paths(target)
    key, me = str(lock_path), threading.get_ident()
    with _held_guard:
        entry = _held.get(key)
        if entry is not None and entry[2] == me:
            entry[1] += 1
    if entry is not None:
        if entry[2] != me:
            raise _busy(target, info_path)
        try:
            yield
        finally:
            with _held_guard:
                entry[1] -= 1
        return
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=wait)
    except Timeout:
        raise _busy(target, info_path) from None
    except OSError as exc:
        raise SemheatError(f"cannot lock {target}: {exc.strerror or exc}") from None
    with _held_guard:
        _held[key] = [lock, 1, me]
    try:
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "command": command or _command_line(),
                "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        try:  # written in place (no temporary that a kill could strand); a torn description
            info_path.write_text(json.dumps(info))  # only reads as "another process"
        except OSError:
            pass  # the lock holds anyway; only the description of the holder is lost
        yield
    finally:
        with _held_guard:
            _held.pop(key, None)
        info_path.unlink(missing_ok=True)
        lock.release()


def _command_line() -> str:
    argv = list(sys.argv) or ["python"]
    argv[0] = os.path.basename(argv[0])
    return " ".join(argv)[:200]
