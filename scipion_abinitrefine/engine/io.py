"""Particle STAR files and MRC maps/stacks (no Scipion import).

STAR files follow RELION 3.1 (``data_optics`` + ``data_particles``); RELION 3.0 style files (one particle
block, acquisition values as particle columns, no optics block) are read too. Parsing uses ``emtable``;
images are read through ``mrcfile`` memory maps.

Every problem with user input raises :class:`ParticleInputError` (a ``ValueError``) whose message names the
file (and the particle row / image name / column / parameter involved) and says what to do about it.
Particle rows in messages are 1-based, counted in the particle table of the STAR file.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import mrcfile
import numpy as np
from emtable import Table

from .ctf import CTFParams
from .outdir import atomic

__all__ = [
    "ParticleInputError", "ParticleSet", "read_star", "write_star", "read_mrc", "write_mrc",
    "write_stack", "open_stack",
]

# Header voxel sizes treated as "not set" (many programs leave 0 or 1.0 in the header).
_UNSET_APIX_TOL = 1e-6
_APIX_REL_TOL = 0.01
_MAX_OPEN_STACKS = 256


class ParticleInputError(ValueError):
    """Bad or inconsistent input (STAR file, stacks, maps); the message names the file and what to do."""


# ----------------------------------------------------------------------------------------------------------
# MRC helpers
# ----------------------------------------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------------------------------------
# ParticleSet
# ----------------------------------------------------------------------------------------------------------

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


def _str_array(x) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype == object and all(type(v) is str for v in a.ravel()[:1]):
        return a.reshape(-1)  # already an object array of str (e.g. from subset): no per-element copy
    out = np.empty(a.size, dtype=object)
    out[:] = [str(v) for v in a.ravel()]
    return out


def _opt_float(x):
    return None if x is None else np.asarray(x, dtype=np.float64).reshape(-1)


_PER_PARTICLE = ("image_names", "stack_paths", "stack_index", "rot", "tilt", "psi", "origin_x", "origin_y",
                 "half", "micrograph", "loglik", "maxprob")
# per-particle scores of the final pose assignment, with RELION's column names
_SCORE_COLUMNS = (("loglik", "rlnLogLikeliContribution"), ("maxprob", "rlnMaxValueProbDistribution"))


@dataclass(eq=False)
class ParticleSet:
    """Particles of one STAR file: image locations, pixel size, box, CTF and (optionally) poses.

    String arrays (``image_names``, ``stack_paths``, ``micrograph``) are numpy object arrays of ``str``.
    Angles are in degrees (RELION ZYZ), origins in A (``rlnOriginXAngst/YAngst``), ``half`` is 1 or 2.
    """

    image_names: np.ndarray
    stack_paths: np.ndarray
    stack_index: np.ndarray
    apix: float
    box: int
    ctf: CTFParams
    rot: np.ndarray | None = None
    tilt: np.ndarray | None = None
    psi: np.ndarray | None = None
    origin_x: np.ndarray | None = None
    origin_y: np.ndarray | None = None
    half: np.ndarray | None = None
    micrograph: np.ndarray | None = None
    loglik: np.ndarray | None = None  # rlnLogLikeliContribution: log marginal likelihood (vs noise only)
    maxprob: np.ndarray | None = None  # rlnMaxValueProbDistribution: posterior probability of the best pose
    source_star: str | None = None
    _cache: _StackCache | None = field(default=None, init=False, repr=False)
    _codes: tuple | None = field(default=None, init=False, repr=False)

    def __post_init__(self):
        self.image_names = _str_array(self.image_names)
        self.stack_paths = _str_array(self.stack_paths)
        self.stack_index = np.asarray(self.stack_index, dtype=np.int64).reshape(-1)
        self.apix = float(self.apix)
        self.box = int(self.box)
        for name in ("rot", "tilt", "psi", "origin_x", "origin_y", "loglik", "maxprob"):
            setattr(self, name, _opt_float(getattr(self, name)))
        if self.half is not None:
            self.half = np.asarray(self.half, dtype=np.int64).reshape(-1)
        if self.micrograph is not None:
            self.micrograph = _str_array(self.micrograph)
        n = len(self.image_names)
        for name in _PER_PARTICLE:
            v = getattr(self, name)
            if v is not None and len(v) != n:
                raise ValueError(f"ParticleSet: {name} has {len(v)} entries, image_names has {n}")
        if len(self.ctf) != n:
            raise ValueError(f"ParticleSet: ctf has {len(self.ctf)} entries, image_names has {n}")
        self._cache = _StackCache()
        self._codes = None

    def __len__(self) -> int:
        return len(self.image_names)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_cache"] = None  # memory maps are not pickled; reopened on demand
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._cache = _StackCache()

    @property
    def has_poses(self) -> bool:
        """True when angles and origins are all set."""
        return all(getattr(self, f) is not None for f in ("rot", "tilt", "psi", "origin_x", "origin_y"))

    def _index(self, idx) -> np.ndarray:
        if isinstance(idx, slice):
            return np.arange(len(self))[idx]
        idx = np.asarray(idx)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise IndexError(f"boolean mask of shape {idx.shape} for {len(self)} particles")
            return np.flatnonzero(idx)
        idx = np.atleast_1d(idx).astype(np.int64, copy=False).reshape(-1)
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"particle index out of range for {n} particles")
        return np.where(idx < 0, idx + n, idx)

    def _derive(self, **changes) -> ParticleSet:
        kw = {name: getattr(self, name) for name in
              ("image_names", "stack_paths", "stack_index", "apix", "box", "ctf", "rot", "tilt", "psi",
               "origin_x", "origin_y", "half", "micrograph", "loglik", "maxprob", "source_star")}
        kw.update(changes)
        out = ParticleSet(**kw)
        out._cache = self._cache  # same stacks: share the open memory maps
        return out

    def subset(self, idx) -> ParticleSet:
        """New set with the particles ``idx`` (int array, bool mask or slice), in that order."""
        ii = self._index(idx)
        ch = {name: (None if getattr(self, name) is None else getattr(self, name)[ii])
              for name in _PER_PARTICLE}
        ch["ctf"] = self.ctf.subset(ii)
        return self._derive(**ch)

    def with_poses(self, rot, tilt, psi, origin_x, origin_y, half=None) -> ParticleSet:
        """Copy with new poses (deg, A); ``half=None`` keeps the current half-set ids."""
        ch = {k: np.array(v, dtype=np.float64).reshape(-1) for k, v in
              (("rot", rot), ("tilt", tilt), ("psi", psi), ("origin_x", origin_x), ("origin_y", origin_y))}
        ch["half"] = self.half if half is None else np.array(half, dtype=np.int64).reshape(-1)
        return self._derive(**ch)

    def _stack_codes(self):
        if self._codes is None:
            uniq, inv = np.unique(self.stack_paths.astype(str), return_inverse=True) if len(self) else \
                (np.empty(0, dtype=str), np.empty(0, dtype=np.int64))
            self._codes = (uniq, inv.reshape(-1))
        return self._codes

    def read_images(self, idx) -> np.ndarray:
        """Images of particles ``idx`` as float32 (len(idx), box, box), in the order of ``idx``.

        Reads are grouped per stack and done in increasing stack index for speed.
        """
        ii = self._index(idx)
        out = np.empty((len(ii), self.box, self.box), dtype=np.float32)
        if len(ii) == 0:
            return out
        if self._cache is None:
            self._cache = _StackCache()
        uniq, inv = self._stack_codes()
        codes = inv[ii]
        order = np.argsort(codes, kind="stable")
        bounds = np.flatnonzero(np.diff(codes[order])) + 1
        for grp in np.split(order, bounds):
            path = str(uniq[codes[grp[0]]])
            stack = self._cache.get(path)
            sidx = self.stack_index[ii[grp]]
            if stack.shape[1:] != (self.box, self.box):
                raise ParticleInputError(
                    f"image stack '{path}' has images of {stack.shape[2]}x{stack.shape[1]} pixels but the "
                    f"particle set (STAR '{self.source_star}') has box {self.box}: re-read the STAR file.")
            if sidx.max() >= stack.shape[0] or sidx.min() < 0:
                bad = grp[np.argmax((sidx >= stack.shape[0]) | (sidx < 0))]
                raise ParticleInputError(
                    f"particle {ii[bad]} (image '{self.image_names[ii[bad]]}') refers to image "
                    f"{self.stack_index[ii[bad]] + 1} of '{path}', which has {stack.shape[0]} images.")
            srt = np.argsort(sidx, kind="stable")
            s_sorted = sidx[srt]
            if s_sorted[-1] - s_sorted[0] + 1 == len(s_sorted) and np.all(np.diff(s_sorted) == 1):
                block = stack[s_sorted[0]:s_sorted[-1] + 1]
            else:
                block = stack[s_sorted]
            try:
                out[grp[srt]] = block
                release_pages(stack, int(s_sorted[0]), int(s_sorted[-1]) + 1)
            except (OSError, ValueError) as err:
                raise ParticleInputError(
                    f"cannot read images from '{path}' ({err}): check the file.") from err
        return out

    def check_finite(self, chunk: int = 4096) -> np.ndarray:
        """Scan all images; raise :class:`ParticleInputError` naming the first particle with NaN/Inf.

        Returns the rows of constant (e.g. all-zero) images, which carry no signal; :func:`job.run_job`
        refuses a set made mostly of them and warns about a few.
        """
        n = len(self)
        constant = []
        for s in range(0, n, chunk):
            imgs = self.read_images(np.arange(s, min(n, s + chunk)))
            ok = np.isfinite(imgs).all(axis=(1, 2))
            if not ok.all():
                i = s + int(np.argmin(ok))
                raise ParticleInputError(
                    f"particle {self.describe(i)} contains NaN or infinite pixel values: remove this particle "
                    "or re-extract/re-normalise its stack.")
            flat = imgs.reshape(len(imgs), -1)
            constant.extend((s + np.flatnonzero(flat.max(axis=1) == flat.min(axis=1))).tolist())
        return np.asarray(constant, dtype=np.int64)

    def describe(self, i: int) -> str:
        """'row N of STAR 'x' (image 'name', stack 'path')' for messages that name a particle."""
        src = f" of STAR '{self.source_star}'" if self.source_star else ""
        return f"row {i + 1}{src} (image '{self.image_names[i]}', stack '{self.stack_paths[i]}')"


# ----------------------------------------------------------------------------------------------------------
# STAR reading
# ----------------------------------------------------------------------------------------------------------

_CTF_HINT = {
    "rlnDefocusU": "run CTF estimation first / the particles need CTF parameters",
    "rlnDefocusV": "run CTF estimation first / the particles need CTF parameters",
    "rlnDefocusAngle": "run CTF estimation first / the particles need CTF parameters",
    "rlnVoltage": "add the acquisition parameters (voltage, spherical aberration, amplitude contrast) "
                  "to data_optics (RELION 3.1) or the particle table",
    "rlnSphericalAberration": "add the acquisition parameters (voltage, spherical aberration, amplitude "
                              "contrast) to data_optics (RELION 3.1) or the particle table",
    "rlnAmplitudeContrast": "add the acquisition parameters (voltage, spherical aberration, amplitude "
                            "contrast) to data_optics (RELION 3.1) or the particle table (typically 0.1)",
}


def _star_blocks(path: str) -> list[tuple[str, int]]:
    """(block name, byte offset of its 'data_' line) for every data block of a STAR file."""
    blocks = []
    with open(path, "rb") as f:
        pos = 0
        for line in f:
            s = line.strip()
            if s.startswith(b"data_"):
                name = s[5:].split()[0].decode("utf-8", "replace") if len(s) > 5 else ""
                blocks.append((name, pos))
            pos += len(line)
    return blocks


def _read_block(path: str, name: str, offset: int) -> tuple[list[str], list[tuple]]:
    """Column names and column value tuples (all str) of one block, parsed with emtable."""
    t = Table()
    try:
        with open(path) as f:
            f.seek(offset)
            t.readStar(f, tableName=name, guessType=False)
    except Exception as err:
        raise ParticleInputError(
            f"cannot parse block data_{name} of STAR file '{path}' ({type(err).__name__}: {err}): check that "
            "every row has one value per column and the file is not truncated.") from err
    names = t.getColumnNames()
    cols = list(zip(*t)) if len(t) else [() for _ in names]
    return names, cols


class _Columns:
    """Particle-table columns, with optics-group values mapped onto particles (RELION 3.1)."""

    def __init__(self, star, pnames, pcols, onames=None, ocols=None, block="particles"):
        self.star = star
        self.block = block
        self.p = dict(zip(pnames, pcols))
        self.n = len(pcols[0]) if pcols else 0
        self.o = dict(zip(onames, ocols)) if onames is not None else None
        self.group_row = None  # optics-table row of each particle
        if self.o is not None:
            self._map_optics()

    def _map_optics(self):
        ngroups = len(next(iter(self.o.values()))) if self.o else 0
        if ngroups == 0:
            raise ParticleInputError(
                f"STAR file '{self.star}' has an empty data_optics block: add one row per optics group "
                "(voltage, Cs, amplitude contrast, pixel size, image size).")
        if "rlnOpticsGroup" in self.o:
            ids = [self._parse_int(v, "rlnOpticsGroup", i, table="data_optics")
                   for i, v in enumerate(self.o["rlnOpticsGroup"])]
        else:
            ids = list(range(1, ngroups + 1))
        lookup = {g: r for r, g in enumerate(ids)}
        if "rlnOpticsGroup" in self.p:
            rows = np.empty(self.n, dtype=np.int64)
            for i, v in enumerate(self.p["rlnOpticsGroup"]):
                g = self._parse_int(v, "rlnOpticsGroup", i)
                if g not in lookup:
                    raise ParticleInputError(
                        f"particle row {i + 1} of STAR file '{self.star}' has rlnOpticsGroup {g}, which is "
                        f"not in data_optics (groups {sorted(lookup)}): fix the particles' optics groups.")
                rows[i] = lookup[g]
        elif ngroups == 1:
            rows = np.zeros(self.n, dtype=np.int64)
        else:
            raise ParticleInputError(
                f"STAR file '{self.star}' has {ngroups} optics groups but no rlnOpticsGroup column in "
                "data_particles: add rlnOpticsGroup to every particle.")
        self.group_row = rows

    def _parse_int(self, v, col, i, table=None):
        try:
            f = float(v)
            if f != int(f):
                raise ValueError
            return int(f)
        except (ValueError, OverflowError):
            where = table or f"data_{self.block}"
            raise ParticleInputError(
                f"column {col} of STAR file '{self.star}' ({where}) has the non-integer value '{v}' at row "
                f"{i + 1}: fix the STAR file.") from None

    def has(self, col) -> bool:
        return col in self.p or (self.o is not None and col in self.o)

    def where(self, col) -> str:
        return f"data_{self.block}" if col in self.p else "data_optics"

    def raw(self, col):
        """Per-particle list of raw string values (optics values broadcast), or None."""
        if col in self.p:
            return self.p[col]
        if self.o is not None and col in self.o:
            vals = self.o[col]
            return [vals[r] for r in self.group_row]
        return None

    def floats(self, col, required=False, hint=None, finite=True):
        if col in self.p:
            vals, table = self.p[col], f"data_{self.block}"
        elif self.o is not None and col in self.o:
            vals, table = self.o[col], "data_optics"
        else:
            if required:
                blocks = f"data_{self.block}" + (" or data_optics" if self.o is not None else "")
                raise ParticleInputError(f"STAR file '{self.star}' has no {col} column (in {blocks}): "
                                         f"{hint or 'add it'}.")
            return None
        try:
            arr = np.array(vals, dtype=np.float64)
        except ValueError:
            for i, v in enumerate(vals):
                try:
                    float(v)
                except ValueError:
                    raise ParticleInputError(
                        f"column {col} of STAR file '{self.star}' ({table}) has the non-numeric value "
                        f"'{v}' at row {i + 1}: fix the STAR file.") from None
            raise
        if finite and not np.all(np.isfinite(arr)):
            i = int(np.argmin(np.isfinite(arr)))
            raise ParticleInputError(f"column {col} of STAR file '{self.star}' ({table}) has the value "
                                     f"'{vals[i]}' at row {i + 1}: fix or remove that row.")
        if table == "data_optics":
            arr = arr[self.group_row]
        return arr


def _parse_image_name(name: str, star: str, row: int) -> tuple[int, str]:
    """'000012@path' -> (11, 'path'); 'path' -> (0, 'path') (a single image file)."""
    if "@" in name:
        num, path = name.split("@", 1)
        try:
            k = int(num)
        except ValueError:
            k = 0
        if k < 1 or not path:
            raise ParticleInputError(
                f"particle row {row + 1} of STAR file '{star}' has rlnImageName '{name}', which is not of "
                "the form 'N@stack.mrcs' with N >= 1 (1-based): fix the image names.")
        k -= 1
    else:
        k, path = 0, name
    for suffix in (":mrcs", ":mrc"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
    return k, path


def _resolve(raw: str, star_dir: str) -> str | None:
    """Absolute path of a stack named in a STAR file: STAR directory first, then the current directory."""
    if os.path.isabs(raw):
        return os.path.normpath(raw) if os.path.isfile(raw) else None
    for base in (star_dir, os.getcwd()):
        cand = os.path.normpath(os.path.join(base, raw))
        if os.path.isfile(cand):
            return cand
    return None


def read_star(path, check_images=True) -> ParticleSet:
    """Read a RELION 3.1 or 3.0 particle STAR file.

    Parameters
    ----------
    path : str or path-like
        The particle STAR file.
    check_images : bool
        Open every distinct stack once (memory map, header) and check stack indices, box sizes (equal,
        square) and the pixel size against the MRC header. Stack files must exist in any case.

    Returns
    -------
    ParticleSet
    """
    star = os.path.abspath(os.fspath(path))
    if not os.path.isfile(star):
        raise ParticleInputError(f"particle STAR file '{star}' does not exist: check the path to the "
                                 "particles STAR file.")
    star_dir = os.path.dirname(star)
    blocks = _star_blocks(star)
    if not blocks:
        raise ParticleInputError(f"'{star}' has no data_ block: it is not a STAR file (expected a RELION "
                                 "particles STAR file with data_optics and data_particles).")
    by_name = {}
    for name, off in blocks:
        by_name.setdefault(name, off)

    onames = ocols = None
    if "optics" in by_name and "particles" in by_name:
        onames, ocols = _read_block(star, "optics", by_name["optics"])
        pblock = "particles"
        pnames, pcols = _read_block(star, pblock, by_name[pblock])
    else:
        pblock = pnames = pcols = None
        order = [b for b in ("particles", "images") if b in by_name]
        order += [b for b, _ in blocks if b not in order and b != "optics"]
        for b in order:
            names, cols = _read_block(star, b, by_name[b])
            if "rlnImageName" in names:
                pblock, pnames, pcols = b, names, cols
                break
        if pblock is None:
            raise ParticleInputError(f"STAR file '{star}' has no particle table (no block with an "
                                     "rlnImageName column): give the particles STAR file, not a micrograph "
                                     "or model STAR file.")
    if "rlnImageName" not in pnames:
        raise ParticleInputError(f"STAR file '{star}' has no rlnImageName column in data_{pblock}: the "
                                 "particles need image locations (N@stack.mrcs).")
    C = _Columns(star, pnames, pcols, onames, ocols, block=pblock)
    n = C.n
    if n == 0:
        raise ParticleInputError(f"STAR file '{star}' has no particles (data_{pblock} is empty): select or "
                                 "extract particles first.")

    # --- image locations ---
    names = [str(v) for v in C.p["rlnImageName"]]
    stack_index = np.empty(n, dtype=np.int64)
    raw_paths = []
    for i, nm in enumerate(names):
        k, p = _parse_image_name(nm, star, i)
        stack_index[i] = k
        raw_paths.append(p)
    resolved: dict[str, str] = {}
    for i, p in enumerate(raw_paths):
        if p in resolved:
            continue
        r = _resolve(p, star_dir)
        if r is None:
            tried = p if os.path.isabs(p) else (f"{os.path.join(star_dir, p)}' or "
                                                f"'{os.path.join(os.getcwd(), p)}")
            raise ParticleInputError(
                f"particle row {i + 1} of STAR file '{star}' (image '{names[i]}'): stack file '{tried}' does "
                "not exist: image paths are taken relative to the STAR file's directory (then the current "
                "directory); move the stacks or fix rlnImageName.")
        resolved[p] = r
    stack_paths = np.array([resolved[p] for p in raw_paths], dtype=object)

    # --- CTF ---
    f = {c: C.floats(c, required=True, hint=_CTF_HINT[c]) for c in _CTF_HINT}
    ps_shift = C.floats("rlnPhaseShift")
    ctf = CTFParams(f["rlnDefocusU"], f["rlnDefocusV"], f["rlnDefocusAngle"], f["rlnVoltage"],
                    f["rlnSphericalAberration"], f["rlnAmplitudeContrast"],
                    ps_shift if ps_shift is not None else np.zeros(n))
    for col, ok, what in (("rlnVoltage", f["rlnVoltage"] > 0, "must be > 0 (kV)"),
                          ("rlnAmplitudeContrast", (f["rlnAmplitudeContrast"] >= 0)
                           & (f["rlnAmplitudeContrast"] < 1), "must be in [0, 1)"),
                          ("rlnSphericalAberration", f["rlnSphericalAberration"] >= 0, "must be >= 0 (mm)")):
        if not ok.all():
            i = int(np.argmin(ok))
            raise ParticleInputError(f"{col} of STAR file '{star}' ({C.where(col)}) is {f[col][i]} for "
                                     f"particle row {i + 1}: it {what}; fix the acquisition parameters.")

    # --- pixel size ---
    apix_arr = C.floats("rlnImagePixelSize")
    apix_src = "rlnImagePixelSize"
    if apix_arr is None and C.has("rlnDetectorPixelSize") and C.has("rlnMagnification"):
        apix_arr = C.floats("rlnDetectorPixelSize") * 1e4 / C.floats("rlnMagnification")
        apix_src = "rlnDetectorPixelSize*1e4/rlnMagnification"
    if apix_arr is not None:
        if not np.all(apix_arr > 0):
            i = int(np.argmin(apix_arr > 0))
            raise ParticleInputError(f"STAR file '{star}' gives pixel size {apix_arr[i]} ({apix_src}) for "
                                     f"particle row {i + 1}: it must be > 0 A; fix the pixel size.")
        lo, hi = float(apix_arr.min()), float(apix_arr.max())
        if (hi - lo) / lo > _APIX_REL_TOL:
            raise ParticleInputError(
                f"particles of STAR file '{star}' have different pixel sizes ({lo:g} to {hi:g} A, "
                f"{apix_src}): this job needs one pixel size; rescale/re-extract the particles to a common "
                "pixel size.")
        apix = float(apix_arr[0])
    else:
        apix = None

    # --- box size from the STAR ---
    star_box = None
    size_arr = C.floats("rlnImageSize")
    if size_arr is not None:
        if np.any(size_arr != size_arr[0]):
            raise ParticleInputError(
                f"particles of STAR file '{star}' have different box sizes (rlnImageSize "
                f"{int(size_arr.min())} to {int(size_arr.max())}): re-extract them with one box size.")
        star_box = int(size_arr[0])

    # --- stacks ---
    uniq_stacks = list(dict.fromkeys(stack_paths.tolist()))
    cache = _StackCache()
    box = None
    if check_images:
        first_row = {}
        for i, p in enumerate(stack_paths):
            first_row.setdefault(p, i)
        ref = None
        hdr_apix = {}
        for p in uniq_stacks:
            data, vs = _stack_mmap(p)
            n_img, ny, nx = data.shape
            if ny != nx:
                raise ParticleInputError(
                    f"images in stack '{p}' (STAR '{star}', particle row {first_row[p] + 1}) are not square "
                    f"({nx} x {ny} pixels): re-extract the particles with a square box.")
            if ref is None:
                ref = (p, nx)
            elif nx != ref[1]:
                raise ParticleInputError(
                    f"particles of STAR file '{star}' have mixed box sizes: stack '{ref[0]}' has {ref[1]} x "
                    f"{ref[1]} images but stack '{p}' has {nx} x {nx}: re-extract all particles with one "
                    "box size.")
            hdr_apix[p] = vs
            cache.put(p, data)
            sel = stack_paths == p
            bad = np.flatnonzero(sel & (stack_index >= n_img))
            if bad.size:
                i = int(bad[0])
                raise ParticleInputError(
                    f"particle row {i + 1} of STAR file '{star}' (image '{names[i]}') refers to image "
                    f"{stack_index[i] + 1} of stack '{p}', which has only {n_img} image(s): the STAR file "
                    "does not match the stacks; re-extract or fix rlnImageName.")
        box = ref[1]
        if star_box is not None and star_box != box:
            raise ParticleInputError(
                f"STAR file '{star}' says rlnImageSize {star_box} but its stacks (e.g. '{ref[0]}') have "
                f"{box} x {box} images: fix rlnImageSize in data_optics or re-extract the particles.")
        set_apix = {p: v for p, v in hdr_apix.items() if not _apix_unset(v)}
        if apix is None:
            if not set_apix:
                raise ParticleInputError(
                    f"STAR file '{star}' gives no pixel size (no rlnImagePixelSize, nor rlnDetectorPixelSize "
                    "and rlnMagnification) and the stack headers do not set one: add rlnImagePixelSize.")
            p0, apix = next(iter(set_apix.items()))
            apix_src = f"header of '{p0}'"
        for p, v in set_apix.items():
            if abs(v - apix) / apix > _APIX_REL_TOL:
                raise ParticleInputError(
                    f"pixel size disagreement: STAR file '{star}' gives {apix:g} A/px ({apix_src}) but the "
                    f"MRC header of stack '{p}' says {v:g} A/px: fix rlnImagePixelSize (or the stack header) "
                    "so they agree.")
    else:
        if apix is None:
            raise ParticleInputError(
                f"STAR file '{star}' gives no pixel size (no rlnImagePixelSize, nor rlnDetectorPixelSize and "
                "rlnMagnification): add rlnImagePixelSize (or read it with check_images=True to take the "
                "stack header's).")
        if star_box is not None:
            box = star_box
        else:
            data, _ = _stack_mmap(uniq_stacks[0])
            box = int(data.shape[2])
            cache.put(uniq_stacks[0], data)

    # --- poses, half sets, micrographs ---
    rot = tilt = psi = ox = oy = None
    if all(C.has(c) for c in ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")):
        rot, tilt, psi = (C.floats(c) for c in ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"))
    if C.has("rlnOriginXAngst") and C.has("rlnOriginYAngst"):
        ox, oy = C.floats("rlnOriginXAngst"), C.floats("rlnOriginYAngst")
    elif C.has("rlnOriginX") and C.has("rlnOriginY"):
        ox, oy = C.floats("rlnOriginX") * apix, C.floats("rlnOriginY") * apix
    half = None
    if C.has("rlnRandomSubset"):
        vals = C.raw("rlnRandomSubset")
        half = np.array([C._parse_int(v, "rlnRandomSubset", i) for i, v in enumerate(vals)], dtype=np.int64)
        bad = np.flatnonzero((half != 1) & (half != 2))
        if bad.size:
            i = int(bad[0])
            raise ParticleInputError(
                f"rlnRandomSubset of STAR file '{star}' is {half[i]} for particle row {i + 1} (image "
                f"'{names[i]}'): half-set ids must be 1 or 2; fix or remove the rlnRandomSubset column.")
    micrograph = None
    if C.has("rlnMicrographName"):
        micrograph = np.array([str(v) for v in C.raw("rlnMicrographName")], dtype=object)

    scores = {name: C.floats(col) for name, col in _SCORE_COLUMNS if C.has(col)}
    ps = ParticleSet(image_names=np.array(names, dtype=object), stack_paths=stack_paths,
                     stack_index=stack_index, apix=apix, box=box, ctf=ctf, rot=rot, tilt=tilt, psi=psi,
                     origin_x=ox, origin_y=oy, half=half, micrograph=micrograph, source_star=star, **scores)
    ps._cache = cache
    return ps


# ----------------------------------------------------------------------------------------------------------
# STAR writing
# ----------------------------------------------------------------------------------------------------------

def _fmt_str(v: str) -> str:
    s = str(v)
    if s == "":
        return '""'
    if any(c.isspace() for c in s) or s[0] in "'\"_#":
        return '"' + s.replace('"', "'") + '"'
    return s


def _write_loop(f, block: str, columns: list[tuple[str, list[str]]]) -> None:
    f.write(f"\n# version 30001\n\ndata_{block}\n\nloop_ \n")
    for k, (name, _) in enumerate(columns, 1):
        f.write(f"_{name} #{k} \n")
    for row in zip(*(vals for _, vals in columns)):
        f.write(" ".join(row))
        f.write(" \n")
    f.write("\n")


def _fcol(a, fmt="%.6f") -> list[str]:
    return [fmt % v for v in np.asarray(a, dtype=np.float64)]


def write_star(path, ps: ParticleSet) -> None:
    """Write a RELION 3.1 particle STAR file (``data_optics`` + ``data_particles``).

    One optics group per unique (voltage, Cs, amplitude contrast). Image paths are written relative to the
    STAR file's directory when the stack lies under it, absolute otherwise. Poses are written when angles
    and/or origins are set, ``rlnRandomSubset`` when ``half`` is set. The file is written atomically.
    """
    path = os.path.abspath(os.fspath(path))
    star_dir = os.path.dirname(path)
    n = len(ps)
    acq = np.stack([ps.ctf.voltage, ps.ctf.cs, ps.ctf.q0], axis=1) if n else np.zeros((0, 3))
    groups, gidx = np.unique(acq, axis=0, return_inverse=True)
    gidx = np.asarray(gidx).reshape(-1)
    ng = len(groups)
    optics = [
        ("rlnOpticsGroupName", [f"opticsGroup{g + 1}" for g in range(ng)]),
        ("rlnOpticsGroup", [str(g + 1) for g in range(ng)]),
        ("rlnVoltage", _fcol(groups[:, 0])),
        ("rlnSphericalAberration", _fcol(groups[:, 1])),
        ("rlnAmplitudeContrast", _fcol(groups[:, 2])),
        ("rlnImagePixelSize", ["%.6f" % ps.apix] * ng),
        ("rlnImageSize", [str(ps.box)] * ng),
        ("rlnImageDimensionality", ["2"] * ng),
    ]

    rel_cache: dict[str, str] = {}

    def rel(p: str) -> str:
        r = rel_cache.get(p)
        if r is None:
            ap = os.path.abspath(p)
            try:
                under = os.path.commonpath([ap, star_dir]) == star_dir
            except ValueError:
                under = False
            r = os.path.relpath(ap, star_dir) if under else ap
            rel_cache[p] = r
        return r

    image_names = [_fmt_str(f"{k + 1:06d}@{rel(p)}") for k, p in zip(ps.stack_index.tolist(), ps.stack_paths)]
    parts = [("rlnImageName", image_names)]
    if ps.micrograph is not None:
        parts.append(("rlnMicrographName", [_fmt_str(m) for m in ps.micrograph]))
    parts += [
        ("rlnDefocusU", _fcol(ps.ctf.defocus_u)),
        ("rlnDefocusV", _fcol(ps.ctf.defocus_v)),
        ("rlnDefocusAngle", _fcol(ps.ctf.defocus_angle)),
        ("rlnPhaseShift", _fcol(ps.ctf.phase_shift)),
        ("rlnOpticsGroup", [str(g + 1) for g in gidx.tolist()]),
    ]
    if ps.rot is not None and ps.tilt is not None and ps.psi is not None:
        parts += [("rlnAngleRot", _fcol(ps.rot)), ("rlnAngleTilt", _fcol(ps.tilt)),
                  ("rlnAnglePsi", _fcol(ps.psi))]
    if ps.origin_x is not None and ps.origin_y is not None:
        parts += [("rlnOriginXAngst", _fcol(ps.origin_x)), ("rlnOriginYAngst", _fcol(ps.origin_y))]
    if ps.half is not None:
        parts.append(("rlnRandomSubset", [str(int(h)) for h in ps.half]))
    for name, col in _SCORE_COLUMNS:
        if getattr(ps, name) is not None:
            parts.append((col, _fcol(getattr(ps, name))))

    with atomic(path) as tmp, open(tmp, "w") as f:
        _write_loop(f, "optics", optics)
        _write_loop(f, "particles", parts)

