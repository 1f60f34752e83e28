"""Bounds checks of every numeric job parameter, from the bounds in the parameter table (:mod:`params`).

The job (:func:`job.validate`), the command line and the Scipion form (which turns its values into the
command line's options) all check parameters with :func:`check`, before any compute. Bounds that depend on
the data (Nyquist, box, particle count) are :func:`params.data_errors`.
"""
from __future__ import annotations

import math

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
