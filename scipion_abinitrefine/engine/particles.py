"""Particles: where their images are, their CTF and (optionally) poses, half-sets and scores.

:class:`ParticleSet` is the particles of one STAR file (images read through memory-mapped MRC stacks);
:class:`ParticleSource` is what the job needs from particles, which in-memory test sources implement too.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from .ctf import CTFParams
from .mrc import ParticleInputError, _StackCache, release_pages


@runtime_checkable
class ParticleSource(Protocol):
    """What the job reads from particles: their number, box, pixel size, CTF and images by index."""

    box: int
    apix: float
    ctf: CTFParams

    def __len__(self) -> int: ...

    def read_images(self, idx) -> np.ndarray: ...


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
                 "half", "micrograph", "loglik", "maxprob", "select_z", "class_number")
# per-particle scores of the final pose assignment, with RELION's column names
_SCORE_COLUMNS = (("loglik", "rlnLogLikeliContribution"), ("maxprob", "rlnMaxValueProbDistribution"),
                  ("select_z", "rlnParticleSelectZScore"))


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
    select_z: np.ndarray | None = None  # rlnParticleSelectZScore: outlier z score (engine/outliers.py; high: junk)
    class_number: np.ndarray | None = None  # rlnClassNumber: 1 the particle's class, 2.. junk classes (classes.py)
    source_star: str | None = None
    _cache: _StackCache | None = field(default=None, init=False, repr=False)
    _codes: tuple | None = field(default=None, init=False, repr=False)

    def __post_init__(self):
        self.image_names = _str_array(self.image_names)
        self.stack_paths = _str_array(self.stack_paths)
        self.stack_index = np.asarray(self.stack_index, dtype=np.int64).reshape(-1)
        self.apix = float(self.apix)
        self.box = int(self.box)
        for name in ("rot", "tilt", "psi", "origin_x", "origin_y", "loglik", "maxprob", "select_z"):
            setattr(self, name, _opt_float(getattr(self, name)))
        for name in ("half", "class_number"):
            if getattr(self, name) is not None:
                setattr(self, name, np.asarray(getattr(self, name), dtype=np.int64).reshape(-1))
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
               "origin_x", "origin_y", "half", "micrograph", "loglik", "maxprob", "select_z", "class_number",
               "source_star")}
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
