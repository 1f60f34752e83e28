"""Everything about a job's input checked before the compute (:func:`check`): the parameters against their
bounds, the data and the machine's memory; the images (finite, not constant); settings that are legal but
surely unintended (warnings); an output directory that would hold the input (refused)."""
from __future__ import annotations

import os

import numpy as np

from . import bounds, outdir
from .params import FEW_PER_HALF, JobParams, data_errors, data_warnings, n_used

MAX_CONSTANT_FRACTION = 0.01  # constant (e.g. all-zero) images beyond this fraction: refused


class JobInputError(ValueError):
    """Bad parameters or input, reported before any compute."""


def validate(params: JobParams, ps) -> None:
    """Every check of the parameters that can fail before hours of compute; messages name the parameter."""
    errors = bounds.check(params)
    if errors:
        raise JobInputError("; ".join(errors))
    n = n_used(params.num_particles, len(ps))
    errors = data_errors(params, ps.box, ps.apix, n) or bounds.memory_errors(params, ps.box, ps.apix, n)
    if errors:
        raise JobInputError("; ".join(errors))


def ctf_warnings(ps) -> list[str]:
    """CTF parameters that are legal but surely a conversion error: negative defocus (RELION's convention is
    positive underfocus; a negative value is overfocus, which a sign flip between programs gives)."""
    ctf = getattr(ps, "ctf", None)
    if ctf is None or not len(ps):
        return []
    neg = (np.asarray(ctf.defocus_u) < 0) | (np.asarray(ctf.defocus_v) < 0)
    if not neg.any():
        return []
    first = int(np.argmax(neg))
    where = ps.describe(first) if hasattr(ps, "describe") else f"row {first + 1}"
    return [f"{int(neg.sum())} particles have a negative defocus (rlnDefocusU/V; the first: {where}, "
            f"{float(ctf.defocus_u[first]):g} A): RELION's convention is positive underfocus, so these are read "
            "as overfocus; if the values come from a program with the opposite sign, flip them"]


def check(particles, ps, out_dir: str, params: JobParams, log=print) -> int:
    """The checks before the compute, in the order that writes nothing until all passed: the output
    directory must not hold the input (``particles``: the STAR path, or the set itself), the parameters
    (:func:`validate`), the images; then the warnings. Returns the number of particles the job uses."""
    paths = [particles] if isinstance(particles, (str, os.PathLike)) else []
    paths += list(np.unique(np.asarray(getattr(ps, "stack_paths", np.empty(0))).astype(str)))
    outdir.protect_inputs(out_dir, paths)
    validate(params, ps)
    if hasattr(ps, "check_finite"):
        constant = ps.check_finite()
        if len(constant) > MAX_CONSTANT_FRACTION * len(ps):
            raise JobInputError(f"{len(constant)} of {len(ps)} images are constant (e.g. all zero), the first "
                                f"{ps.describe(int(constant[0]))}: these carry no signal; check the extraction "
                                "or remove them")
        if len(constant):
            log(f"WARNING: {len(constant)} constant images (the first {ps.describe(int(constant[0]))}) carry "
                "no signal")
    for w in data_warnings(params, ps.box, ps.apix, len(ps)) + ctf_warnings(ps):
        log(f"WARNING: {w}")
    n_use = n_used(params.num_particles, len(ps))
    if n_use // 2 < FEW_PER_HALF:
        log(f"WARNING: {n_use // 2} particles per half-set: the gold-standard FSC and the convergence verdict "
            "are weakly determined with so few")
    return n_use
