"""The bounds of every numeric job parameter, in one place.

The job (:func:`job.validate`), the command line and the Scipion form (which turns its values into the
command line's options) all check parameters with :func:`check`, before any compute. Bounds that depend on
the data (Nyquist, box, particle count) stay in :func:`job.validate`.
"""
from __future__ import annotations

import dataclasses
import math

# field: (label, lowest, highest, low_open, what to do); None = unbounded on that side
BOUNDS: dict[str, tuple[str, float | None, float | None, bool, str]] = {
    "num_particles": ("Num particles to use", 0, None, False, "0 uses all particles"),
    "max_res_A": ("Maximum resolution (A)", 0, None, True, "a resolution in A, e.g. 6"),
    "init_res_A": ("Initial resolution (A)", 0, None, True, "a resolution in A, e.g. 35"),
    "init_iters": ("Number of initial iterations", 0, None, False, "e.g. 200"),
    "final_iters": ("Number of final iterations", 0, None, False, "e.g. 300"),
    "radius_step": ("Fourier radius step", 0, 10, True, "pixels per iteration, e.g. 0.04"),
    "init_minibatch": ("Initial minibatch size", 1, None, False, "images per iteration, e.g. 90"),
    "final_minibatch": ("Final minibatch size", 1, None, False, "images per iteration, e.g. 300"),
    "minibatch_switch_iter": ("Minibatch switch iteration", 0, None, False, "e.g. 300"),
    "init_lr": ("Initial learning rate", 0, 1, True, "a fraction in (0, 1], e.g. 0.4"),
    "final_lr": ("Final learning rate", 0, 1, True, "a fraction in (0, 1], e.g. 0.05"),
    "lr_duration": ("Learning rate duration (iterations)", 0, None, False, "e.g. 100"),
    "target_ess_fraction": ("Target 3D ESS fraction", 0, 1, False, "a fraction in [0, 1], e.g. 0.011"),
    "mask_diameter_A": ("Window/mask diameter (A)", 0, None, False, "0 = automatic"),
    "max_shift_frac": ("Maximum shift (fraction of the box)", 0, 0.5, False, "e.g. 0.1"),
    "top_k": ("Poses kept per image between search levels", 1, None, False, "e.g. 8"),
    "final_top_k": ("Poses kept per image in the final pass", 1, None, False, "e.g. 32"),
    "n_backproject": ("Poses back-projected per image", 1, None, False, "e.g. 4"),
    "n_samples": ("Pose samples per image", 0, None, False, "0 = best poses only, e.g. 32"),
    "noise_prior_images": ("Noise model prior weight (images)", 0, None, False, "e.g. 50"),
    "pad": ("Padding factor", 1, 4, False, "2"),
    "n_starts": ("Random starts per half", 1, None, False, "e.g. 3; 1 = one start, no choice"),
    "seed": ("Random seed", 0, None, False, "a non-negative integer"),
    "align_res_A": ("Half-map alignment resolution (A)", 0, None, True, "e.g. 20"),
    "align_every": ("Iterations between half-map alignments", 0, None, False, "0 = only at the end, e.g. 50"),
    "checkpoint_minutes": ("Minutes between checkpoints", 0, None, False, "e.g. 5"),
}
CHOICES = {"backend": ("auto", "cpu", "cuda")}


def check(params) -> list[str]:
    """Every bound violated by ``params`` (a dataclass such as ``JobParams``), one message each."""
    errors = []
    # whole numbers: the fields declared int (annotations are strings under postponed evaluation)
    integer = {f.name for f in dataclasses.fields(params) if f.type in (int, "int")}
    for name, (label, lo, hi, low_open, hint) in BOUNDS.items():
        if not hasattr(params, name):
            continue
        v = getattr(params, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            errors.append(f"{label} ({name}) = {v!r}: not a finite number; {hint}")
            continue
        if name in integer and float(v) != int(v):
            errors.append(f"{label} ({name}) = {v}: must be a whole number; {hint}")
            continue
        bad_lo = lo is not None and (v <= lo if low_open else v < lo)
        bad_hi = hi is not None and v > hi
        if bad_lo or bad_hi:
            rng = (f"{'>' if low_open else '>='} {lo:g}" if hi is None else
                   f"in {'(' if low_open else '['}{lo:g}, {hi:g}]")
            errors.append(f"{label} ({name}) = {v:g}: must be {rng}; {hint}")
    for name, allowed in CHOICES.items():
        if hasattr(params, name) and getattr(params, name) not in allowed:
            errors.append(f"{name} = {getattr(params, name)!r}: one of {', '.join(allowed)}")
    return errors
