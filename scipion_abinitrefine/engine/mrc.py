"""MRC maps and image stacks: memory-mapped reads, atomic writes, a bounded cache of open stacks.

Every problem with a user's file raises :class:`ParticleInputError` (a ``ValueError``) whose message names the
file and says what to do about it.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict

import mrcfile
import numpy as np

from .outdir import atomic

# Header voxel sizes treated as "not set" (many programs leave 0 or 1.0 in the header).
_UNSET_APIX_TOL = 1e-6
_MAX_OPEN_STACKS = 256


class ParticleInputError(ValueError):
    """Bad or inconsistent input (STAR file, stacks, maps); the message names the file and what to do."""


def _open_mmap(path: str, what: str = "image stack"):
    """Open ``path`` with ``mrcfile.mmap`` (mode 'r'), strict first, permissive as a fallback."""
    if not os.path.isfile(path):
        raise ParticleInputError(f"{what} '{path}' does not exist: check the path.")
    try:
        return mrcfile.mmap(path, mode="r")
    except Exception as strict_err:
        try:
            m = mrcfile.mmap(path, mode="r", permissive=True)
        except Exception as err:
            raise ParticleInputError(
                f"{what} '{path}' cannot be read as an MRC file ({err}): check that the file is complete "
                "and is an MRC/MRCS file.") from err
        if m.data is None:
            m.close()
            raise ParticleInputError(
                f"{what} '{path}' cannot be read as an MRC file ({strict_err}): check that the file is "
                "complete (not truncated) and is an MRC/MRCS file.") from strict_err
        return m


def _as_stack(data: np.ndarray) -> np.ndarray:
    """(y, x) -> (1, y, x); (n, y, x) unchanged."""
    if data.ndim == 2:
        return data[None]
    return data


def _mapping_of(arr: np.ndarray):
    """The mmap.mmap an array views (through its .base chain), or None."""
    import mmap

    b = arr
    while b is not None and not isinstance(b, mmap.mmap):
        b = getattr(b, "base", None) if not isinstance(b, memoryview) else b.obj
    return b


def release_pages(arr: np.ndarray, lo: int, hi: int) -> None:
    """Drop the resident pages of images lo..hi-1 of a memory-mapped stack once they are copied out.

    Read pages of a file mapping count in the process's resident memory until the kernel needs them back;
    reading a whole 100k-particle set (the input scan, the epochs) would otherwise show the whole stack as
    resident. They are clean file pages: dropping them loses nothing (a later read faults them back in from
    the page cache)."""
    import mmap

    mm = _mapping_of(arr)
    if mm is None or not hasattr(mm, "madvise") or hi <= lo:
        return
    base = np.frombuffer(mm, np.uint8).__array_interface__["data"][0]
    a = arr[lo].__array_interface__["data"][0] - base
    b = arr[hi - 1].__array_interface__["data"][0] - base + arr[0].nbytes
    a -= a % mmap.PAGESIZE
    try:
        mm.madvise(mmap.MADV_DONTNEED, a, b - a)
    except (OSError, ValueError):  # not worth failing a read for
        pass


def _stack_mmap(path: str) -> tuple[np.ndarray, float]:
    """Memory-mapped (n, y, x) data of an MRC file and its header voxel size (x) in A."""
    m = _open_mmap(path)
    try:
        data = m.data
        vs = float(m.voxel_size.x)
    finally:
        m.close()  # the memmap array stays valid (it keeps its own mapping), the file object is closed
    if data.ndim not in (2, 3):
        raise ParticleInputError(f"image stack '{path}' has {data.ndim} dimensions: expected a 2D image "
                                 "or a stack of 2D images.")
    return _as_stack(data), vs


def _apix_unset(v: float) -> bool:
    return (not np.isfinite(v)) or v <= _UNSET_APIX_TOL or abs(v - 1.0) <= _UNSET_APIX_TOL


def read_mrc(path) -> tuple[np.ndarray, float]:
    """Read an MRC map or image.

    Returns
    -------
    data : np.ndarray
        float32 copy of the data (z, y, x) or (y, x).
    apix : float
        Voxel size in A from the header (x); may be 0 or 1.0 when the header does not set it.
    """
    path = os.fspath(path)
    m = _open_mmap(path, "MRC file")
    try:
        data = np.array(m.data, dtype=np.float32, copy=True)
        vs = float(m.voxel_size.x)
    finally:
        m.close()
    return data, vs


def write_mrc(path, data, apix) -> None:
    """Write a map/image as float32 MRC with the voxel size set and origin 0 (overwrites)."""
    path = os.fspath(path)
    data = np.asarray(data, dtype=np.float32)
    with atomic(path) as tmp, mrcfile.new(tmp, overwrite=True) as m:
        m.set_data(np.ascontiguousarray(data))
        m.voxel_size = float(apix)
        m.header.origin = (0.0, 0.0, 0.0)
        m.update_header_stats()


def write_stack(path, images, apix, chunk: int = 1024) -> None:
    """Write images (n, y, x) (or one (y, x) image) as a float32 ``.mrcs`` stack (overwrites).

    Uses ``mrcfile.new_mmap`` and copies ``chunk`` images at a time, so ``images`` may be a large
    memory-mapped array without making a full in-memory copy.
    """
    path = os.fspath(path)
    images = images if hasattr(images, "ndim") else np.asarray(images)
    if images.ndim == 2:
        images = images[None]
    if images.ndim != 3:
        raise ValueError(f"write_stack('{path}'): images must be (n, y, x), got shape {images.shape}")
    n, ny, nx = images.shape
    with mrcfile.new_mmap(path, shape=(n, ny, nx), mrc_mode=2, overwrite=True) as m:
        m.set_image_stack()
        for s in range(0, n, chunk):
            m.data[s:s + chunk] = np.asarray(images[s:s + chunk], dtype=np.float32)
        m.voxel_size = float(apix)
        m.header.origin = (0.0, 0.0, 0.0)
        m.update_header_stats()


def open_stack(path) -> np.ndarray:
    """Read-only memory-mapped (n, y, x) view of an MRC stack; a single 2D image file gives n = 1."""
    return _stack_mmap(os.fspath(path))[0]


class _StackCache:
    """Thread-safe LRU of memory-mapped stacks (bounded, to spare file handles)."""

    def __init__(self, maxsize: int = _MAX_OPEN_STACKS):
        self.maxsize = maxsize
        self._d: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str) -> np.ndarray:
        with self._lock:
            arr = self._d.get(path)
            if arr is not None:
                self._d.move_to_end(path)
                return arr
        arr = _stack_mmap(path)[0]
        self.put(path, arr)
        return arr

    def put(self, path: str, arr: np.ndarray) -> None:
        with self._lock:
            self._d[path] = arr
            self._d.move_to_end(path)
            while len(self._d) > self.maxsize:
                self._d.popitem(last=False)
