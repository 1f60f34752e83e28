"""Bounds checks of every numeric job parameter, from the bounds in the parameter table (:mod:`params`).

The job (:func:`inputs.validate`), the command line and the Scipion form (which turns its values into the
command line's options) all check parameters with :func:`check`, before any compute. Bounds that depend on
the data (Nyquist, box, particle count) are :func:`params.data_errors`.
"""
from __future__ import annotations

import math
import os

from .params import CHOICES, table
from .symmetry import SymmetryError, normalise


def check(params) -> list[str]:
    """Every bound violated by ``params`` (a dataclass such as ``JobParams``), one message each."""
    errors = []
    for f, m in table(type(params)):
        if m.get("lo") is None and m.get("hi") is None:
            continue
        name, label, lo, hi, low_open, hint = f.name, m["label"], m["lo"], m["hi"], m["low_open"], m["hint"]
        v = getattr(params, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            errors.append(f"{label} ({name}) = {v!r}: not a finite number; {hint}")
            continue
        if f.type in (int, "int") and float(v) != int(v):  # annotations are strings (postponed evaluation)
            errors.append(f"{label} ({name}) = {v}: must be a whole number; {hint}")
            continue
        bad_lo = lo is not None and (v <= lo if low_open else v < lo)
        bad_hi = hi is not None and v > hi
        if bad_lo or bad_hi:
            rng = (f"{'>' if low_open else '>='} {lo:g}" if hi is None else
                   f"in {'(' if low_open else '['}{lo:g}, {hi:g}]")
            errors.append(f"{label} ({name}) = {v:g}: must be {rng}; {hint}")
    if hasattr(params, "symmetry"):
        try:
            normalise(params.symmetry)
        except SymmetryError as e:
            errors.append(f"Symmetry (symmetry) = {params.symmetry!r}: {e}")
    for name, allowed in CHOICES.items():
        if hasattr(params, name) and getattr(params, name) not in allowed:
            errors.append(f"{name} = {getattr(params, name)!r}: one of {', '.join(allowed)}")
    return errors


def total_memory() -> int:
    """Bytes of memory of this machine (0 where it cannot be read)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def memory_errors(p, box: int, apix: float, n_used: int, total: int | None = None) -> list[str]:
    """Settings whose memory alone exceeds this machine's (``total`` bytes; default :func:`total_memory`):
    the random starts (each holds its model and curvature in the working box of the last start radius, and
    its per-particle tables) and the pose search's per-batch tables (the beam, the posterior samples, the
    finer levels' slices). Checked where the job runs, before the compute."""
    from . import fourier, names, schedule, starts

    total = total_memory() if total is None else total
    if total <= 0:
        return []
    errors = []
    r_init, r_max = schedule.radii(p, box, apix)
    rp = 0.5 * (p.mask_diameter_A or names.AUTO_MASK_FRACTION * box * apix) / apix  # as sgd.SGDRun's
    Dw = fourier.working_box(starts.start_radii(r_init, r_max, rp, box)[2], box)
    per_start = (p.pad * Dw) ** 3 * 12 + (n_used // 2 + 1) * 80
    n_starts = getattr(p, "n_starts", 1)
    if 2 * n_starts * per_start > 0.8 * total:
        errors.append(f"Random starts per half (n_starts) = {n_starts:g} need about "
                      f"{2 * n_starts * per_start / 2**30:.3g} GiB (both halves' models while they compete) of "
                      f"this machine's {total / 2**30:.0f} GiB: use fewer (default 8)")
    m_fine = 3.15 * r_max ** 2 / 2  # half-plane points within the maximum radius
    beam = max(p.top_k, p.final_top_k, p.n_backproject + p.n_samples)
    batch = max(p.init_minibatch, p.final_minibatch, 128)
    search = batch * (beam * 160 + p.n_samples * 48) + 64 * beam * m_fine
    if search > 0.5 * total:
        errors.append(f"the pose search's tables for a batch of {batch:g} images need about {search / 2**30:.3g} GiB "
                      f"of this machine's {total / 2**30:.0f} GiB: lower the poses kept per image (top_k) = "
                      f"{p.top_k:g}, in the final pass (final_top_k) = {p.final_top_k:g}, or the pose samples per "
                      f"image (n_samples) = {p.n_samples:g} (defaults 8, 32, 32)")
    return errors
