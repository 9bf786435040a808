"""Per-record arrays of an analysis in bounded memory: preallocated, written and read in chunks.

An :class:`ArrayStore` holds one array per field (features, logits, embeddings, thumbnails,
aligned embeddings…) for a known number of records. With a folder, each is a ``.npy`` file
opened as a memory map — the very files of the bundle being built, so nothing is copied when
it is saved; without one, plain arrays in memory (small analyses, tests).

Pages of a memory map that were read or written stay in the process's resident set until the
mapping is dropped, so a pass over a 12 GB array would look like 12 GB of memory although the
kernel could reclaim it. :func:`read_rows` and :meth:`ArrayStore.write` therefore tell the
kernel the process is done with the pages of each chunk (``madvise(MADV_DONTNEED)``: for a
shared file mapping the data stays in the file and the page cache) — the process's own memory
stays flat in the number of records.
"""

from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np

from ...errors import SemheatError
from ...safe_io import open_npy_memmap
from ..vectors import CHUNK_BYTES, ROW_CHUNK


def release(array) -> None:
    """Drop the resident pages of a memory-mapped array (no effect on other arrays)."""
    handle = getattr(array, "_mmap", None)
    if handle is not None and hasattr(mmap, "MADV_DONTNEED"):
        try:
            handle.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError):  # a closed map, or a platform without it: keep going
            pass


def prefetch(array, rows) -> None:
    """Ask the kernel to read some rows of a memory-mapped array ahead, all at once
    (``MADV_WILLNEED``): rows scattered over a large cold file then come from disk together
    instead of one page fault after another. No effect on arrays in memory."""
    handle = getattr(array, "_mmap", None)
    if handle is None or not hasattr(mmap, "MADV_WILLNEED") or array.ndim == 0:
        return
    try:
        base = np.frombuffer(handle, np.uint8).ctypes.data  # where the map starts
        row_bytes = int(array.strides[0])
        if row_bytes <= 0 or not array.flags.c_contiguous:
            return
        start0 = array.ctypes.data - base
        for i in np.asarray(rows, dtype=np.int64).ravel():
            pos = start0 + int(i) * row_bytes
            page = pos - pos % mmap.PAGESIZE
            handle.madvise(mmap.MADV_WILLNEED, page, pos + row_bytes - page)
    except (OSError, ValueError, TypeError):  # a closed map, or a platform without it
        pass


def read_rows(array, rows) -> np.ndarray:
    """``array[rows]`` as an in-memory copy (a slice or indices), then the memory map's pages
    released (see the module docstring)."""
    out = np.array(array[rows])
    release(array)
    return out


def map_rows(array, rows, fn, size: int = ROW_CHUNK) -> np.ndarray:
    """``fn(array[rows])`` computed ``size`` rows at a time and stacked: for a function that
    makes few columns of many (concept scores of embeddings), half a million rows of a memory
    map cost the memory of one chunk, not of all of them."""
    rows = np.asarray(rows)
    if not len(rows):
        return np.asarray(fn(read_rows(array, rows)))
    return np.concatenate([np.asarray(fn(read_rows(array, rows[s:s + size])))
                           for s in range(0, len(rows), size)])


def row_chunks(n: int, size: int = ROW_CHUNK):
    """``slice`` objects covering ``0..n-1`` in chunks of ``size`` rows."""
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def array_chunks(array, budget: int = CHUNK_BYTES):
    """Row chunks of ``array`` holding at most ``budget`` bytes each (at least one row)."""
    row_bytes = max(1, int(np.prod(array.shape[1:], dtype=np.int64)) * array.dtype.itemsize)
    return row_chunks(len(array), max(1, budget // row_bytes))


class ArrayStore:
    """Arrays of ``n_rows`` records, allocated on first write (the shape of one row and the
    dtype are learnt from the first block), in ``folder`` as memory-mapped ``.npy`` files or in
    memory."""

    def __init__(self, n_rows: int, folder=None):
        self.n_rows = int(n_rows)
        self.folder = Path(folder) if folder is not None else None
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
        self.arrays: dict[str, np.ndarray] = {}

    def __contains__(self, key: str) -> bool:
        return key in self.arrays

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self.arrays:
            raise SemheatError(f"no array {key!r} was written")
        return self.arrays[key]

    def allocate(self, key: str, row_shape, dtype) -> np.ndarray:
        """The array ``key`` (``n_rows x row_shape``), created if it does not exist yet."""
        shape = (self.n_rows, *tuple(row_shape))
        if key in self.arrays:
            have = self.arrays[key]
            if have.shape != shape or have.dtype != np.dtype(dtype):
                raise SemheatError(f"array {key!r} is {have.shape} {have.dtype}; a write of "
                                   f"{shape} {np.dtype(dtype)} does not fit")
            return have
        if self.folder is None:
            array = np.zeros(shape, dtype)
        else:
            array = open_npy_memmap(self.folder / f"{key}.npy", dtype, shape)
        self.arrays[key] = array
        return array

    def write(self, key: str, start: int, block) -> None:
        """Rows ``start .. start + len(block) - 1`` of ``key``."""
        block = np.asarray(block)
        if start < 0 or start + len(block) > self.n_rows:
            raise SemheatError(f"rows {start}..{start + len(block) - 1} of {key!r} are outside "
                               f"0..{self.n_rows - 1}")
        array = self.allocate(key, block.shape[1:], block.dtype)
        array[start:start + len(block)] = block
        release(array)

    def flush(self) -> None:
        for array in self.arrays.values():
            if isinstance(array, np.memmap):
                array.flush()
                release(array)

    def on_disk(self, key: str) -> Path | None:
        """The ``.npy`` file behind ``key`` (None in memory)."""
        return None if self.folder is None else self.folder / f"{key}.npy"
