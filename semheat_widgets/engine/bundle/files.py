"""A bundle's directory on disk: opening it, reading and writing its files, and saving it whole.

Reading: :class:`_Folder` opens the directory once and every file through that handle, so a
load sees one version; :func:`load` starts again on the new version when a concurrent save cut
it short, and waits a moment where a save is between its two renames. The readers of
``records.parquet`` (Arrow), ``arrays/*.npy`` (header checked, data memory-mapped; object
arrays refused) and ``state.safetensors``.

Writing: :func:`writing` holds the writer lock and publishes a temporary folder as the bundle;
:func:`write_bundle` fills it (``.npy`` written in chunks, values checked finite as they pass;
the manifest last).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ...errors import SemheatError
from ...safe_io import (_file_kind, atomic_write, check_replaceable, needs_recovery,
                        open_npy_memmap, parse_json, publish_dir, recover, recover_for_reading,
                        space_errors, temp_dir_for, writer_lock)
from .schema import FINITE_ARRAYS, check_manifest, validate_bundle
from .store import array_chunks, release

_SAVE_HOOK: dict = {}  # tests inject a crash between the two renames of a save here


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


_LOAD_ATTEMPTS = 20  # a load cut short by a concurrent save is retried on the new version
# (only when the folder was replaced meanwhile: real damage still fails at once; 5 were seen
# all cut short on a loaded 2-core machine, with a writer saving in a tight loop)


class _Folder:
    """A bundle directory resolved once: its files are opened relative to one directory
    handle, so they all belong to the version that was at ``path`` when it was opened."""

    def __init__(self, path: Path):
        self.path = path
        self.fd = None
        if os.open in os.supports_dir_fd:
            try:
                self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            except NotADirectoryError:
                raise SemheatError(f"{path} is not a bundle directory") from None
            except FileNotFoundError:
                raise SemheatError(f"{path}: no such bundle directory") from None
            except OSError as exc:
                raise SemheatError(f"{path}: cannot open ({exc.strerror or exc})") from None
            self.identity = _identity(os.fstat(self.fd))
        elif not path.is_dir():  # (no directory handles here: plain paths)
            raise SemheatError(f"{path}: no such bundle directory" if not path.exists()
                               else f"{path} is not a bundle directory")

    def open(self, name: str):
        """A binary file object of ``name`` (a regular file; a FIFO cannot block this)."""
        where = self.path / name
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = (os.open(name, flags, dir_fd=self.fd) if self.fd is not None
                  else os.open(where, flags))
        except FileNotFoundError:
            if name == "manifest.json":
                raise SemheatError(f"{self.path} is not a bundle (no manifest.json)") from None
            raise SemheatError(f"{where}: no such bundle file") from None
        except OSError as exc:
            if isinstance(exc, PermissionError):
                raise SemheatError(f"{where}: permission denied") from None
            raise SemheatError(f"{where}: cannot read ({exc.strerror or exc})") from None
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise SemheatError(f"{where} is not a regular file ({_file_kind(mode)}); "
                               f"refusing to open it")
        return os.fdopen(fd, "rb")

    def read(self, name: str, reader):
        """``reader(file, path)`` on one file, with one-line errors."""
        where = self.path / name
        with self.open(name) as f:
            try:
                return reader(f, where)
            except SemheatError:
                raise
            except Exception as exc:  # OSError, ValueError, Arrow and safetensors errors
                raise SemheatError(f"{where}: cannot read: {_first_line(exc)}") from None

    def json(self, name: str, what: str):
        data = self.read(name, lambda f, p: f.read())
        return parse_json(data, self.path / name, what)

    def replaced(self) -> bool:
        """Whether ``path`` now names another directory than the one read (a save swapped a
        new version in, or is between its two renames)."""
        if self.fd is None:
            return True  # cannot tell: let the caller retry
        try:
            return _identity(os.stat(self.path)) != self.identity
        except OSError:
            return True

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _identity(st) -> tuple:
    return st.st_dev, st.st_ino


def _wait_for(path: Path) -> _Folder:
    """Open ``path``; where a save is between its two renames (the old version moved aside,
    the new one not yet in), wait a moment for the new one (then recover the old one)."""
    for _ in range(200):
        try:
            return _Folder(path)
        except SemheatError:
            if path.exists() and not path.is_dir():
                raise
            if not path.exists() and not needs_recovery(path):
                raise  # nothing there and no save under way
            # else a save is swapping versions in: open again in a moment
        time.sleep(0.01)
    recover_for_reading(path)
    return _Folder(path)


def _read_parquet(f, where: Path) -> pa.Table:
    # On the calling thread, no read-ahead: Arrow's pooled reader threads can outlive the read
    # and abort the interpreter at exit ("terminate called without an active exception",
    # apache/arrow#34314; 5 % of `semheat info` runs under load here). The records of a bundle
    # are small (one row per input, no arrays), so the pool would buy nothing.
    return pq.ParquetFile(f, pre_buffer=False).read(use_threads=False)


def _read_state(f, where: Path) -> dict:
    from safetensors.numpy import load

    return load(f.read())


def _read_npy(f, where: Path, mmap: bool) -> np.ndarray:
    """A ``.npy`` file: its header only, the data memory-mapped (``mmap``) or read. Object
    arrays are refused (nothing is ever unpickled)."""
    fmt = np.lib.format
    version = fmt.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = fmt.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = fmt.read_array_header_2_0(f)
    else:
        raise SemheatError(f"{where}: unsupported .npy format version {version}")
    if dtype.hasobject:
        raise SemheatError(f"{where}: cannot read: holds Python objects (would need pickle; "
                           f"refused)")
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    available = os.fstat(f.fileno()).st_size - f.tell()
    if available < size:
        raise SemheatError(f"{where}: truncated ({available} of {size} data bytes)")
    order = "F" if fortran else "C"
    if not mmap or size == 0:
        return np.fromfile(f, dtype=dtype, count=size // max(dtype.itemsize, 1)).reshape(
            shape, order=order)
    return np.memmap(f, dtype=dtype, mode="r", shape=shape, order=order, offset=f.tell())


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"cannot serialise {type(o).__name__}")


# -- reading a whole bundle ------------------------------------------------------------------
def load(path: Path, mmap: bool, make):
    """``make(manifest, records, arrays, state, path)`` of the bundle at ``path``, its files
    all of one version (see :meth:`.core.Bundle.load`); a read that a concurrent save cut
    short is started again on the new version."""
    for attempt in range(_LOAD_ATTEMPTS):
        folder = _wait_for(path)
        try:
            return make(*_read_bundle(folder, path, mmap), path)
        except SemheatError:
            if not folder.replaced() or attempt == _LOAD_ATTEMPTS - 1:
                raise
        finally:
            folder.close()
    raise AssertionError("unreachable")


def _read_bundle(folder: _Folder, path: Path, mmap: bool) -> tuple:
    """Manifest, records, arrays and state of one opened version, checked (:mod:`.schema`)."""
    manifest_path = path / "manifest.json"
    manifest = folder.json("manifest.json", "bundle manifest")
    check_manifest(manifest, manifest_path)
    records = folder.read("records.parquet", _read_parquet)
    arrays = {}
    for key in manifest["arrays"]:
        arrays[key] = folder.read(f"arrays/{key}.npy",
                                  lambda f, p: _read_npy(f, p, mmap))
    state = folder.read("state.safetensors", _read_state)
    validate_bundle(manifest, records, arrays, state, path)
    return manifest, records, arrays, state


# -- saving ----------------------------------------------------------------------------------
@contextmanager
def writing(path, overwrite: bool = False):
    """A fresh temporary folder beside ``path``, published as the bundle at ``path`` when the
    block ends (removed if it raises), ``path``'s writer lock held throughout."""
    path = Path(path).resolve()
    with writer_lock(path):
        recover(path)
        kind = check_replaceable(path, ("bundle",), "a bundle")
        if kind == "bundle" and not overwrite:
            raise SemheatError(f"{path} exists; pass overwrite=True to replace it")
        with space_errors(path):
            tmp = temp_dir_for(path)
        try:
            with space_errors(path):
                yield tmp
                publish_dir(tmp, path, ("bundle",), "a bundle",
                            _between=_SAVE_HOOK.get("between"))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def write_bundle(folder: Path, manifest: dict, records: pa.Table, arrays: dict,
                 state: dict) -> None:
    """The files of a bundle in ``folder``; the manifest (given without its ``arrays``
    entry, which is filled in here) last."""
    from safetensors.numpy import save_file

    manifest = dict(manifest)
    manifest["arrays"] = {k: {"shape": list(a.shape), "dtype": str(a.dtype)}
                          for k, a in arrays.items()}
    (folder / "arrays").mkdir(exist_ok=True)  # (arrays built in place are there already)
    pq.write_table(records, folder / "records.parquet")
    for key, arr in arrays.items():
        _write_npy(folder / "arrays" / f"{key}.npy", arr)
    save_file({k: np.ascontiguousarray(v) for k, v in state.items()},
              str(folder / "state.safetensors"))
    # the manifest last: a folder with a valid manifest is a complete bundle
    atomic_write(folder / "manifest.json", json.dumps(manifest, indent=1,
                                                      default=_json_default))


def _write_npy(path: Path, arr: np.ndarray, name: str = "") -> None:
    """Write ``arr`` (possibly a memory map) as .npy in row chunks (bounded memory), checking
    its values are finite as they pass (loading reads only the header); a memory map of that
    very file (an array built in place) is only flushed (and checked if in FINITE_ARRAYS)."""
    name = name or path.stem
    in_place = isinstance(arr, np.memmap) and arr.filename and path.exists() and \
        Path(arr.filename).resolve() == path.resolve()
    if in_place:
        arr.flush()
        if name in FINITE_ARRAYS:
            for rows in array_chunks(arr):
                _check_rows(name, arr, rows)
        return
    out = open_npy_memmap(path, arr.dtype, arr.shape)  # reserved: a full disk cannot fault
    for rows in array_chunks(arr):
        _check_rows(name, arr, rows)
        out[rows] = arr[rows]
        release(out)
        release(arr)
    out.flush()
    del out


def _check_rows(name: str, arr: np.ndarray, rows: slice) -> None:
    if arr.dtype.kind == "f" and not np.isfinite(arr[rows]).all():
        raise SemheatError(f"cannot save the bundle: array {name!r} holds NaN or inf values "
                           f"(rows {rows.start}..{rows.stop - 1})")
