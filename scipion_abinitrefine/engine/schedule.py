"""The SGD's schedules (CryoSPARC's, docs/design.rst): resolution, minibatch size, learning rate and the
annealing temperature at iteration ``it``, from the parameters (:class:`params.SGDParams`)."""
from __future__ import annotations

import math


def radius_at(p, r_init: float, r_max: float, it: int) -> float:
    """Fourier radius: ``r_init`` for ``init_iters`` iterations, then ``radius_step`` per iteration to r_max."""
    if it < p.init_iters:
        return r_init
    return min(r_max, r_init + p.radius_step * (it - p.init_iters))


def minibatch_at(p, it: int) -> int:
    return p.init_minibatch if it < p.minibatch_switch_iter else p.final_minibatch


def lr_at(p, it: int) -> float:
    """``init_lr`` for ``lr_duration`` iterations, then decaying as 1/t to ``final_lr``."""
    if it < p.lr_duration:
        return p.init_lr
    return max(p.final_lr, p.init_lr * p.lr_duration / (it + 1))


def temperature_at(p, T0: float | None, it: int) -> float:
    """Annealing: from T0 down to 1 linearly over the initial iterations (1 when there is no annealing)."""
    if T0 is None:
        return 1.0
    f = max(0.0, 1.0 - it / max(1, p.init_iters))
    return 1.0 + (T0 - 1.0) * f


def radii(p, box: int, apix: float) -> tuple[float, float]:
    """(initial, maximum) Fourier radius in index units of the full box (the maximum at most Nyquist - 1)."""
    return box * apix / p.init_res_A, min(box * apix / p.max_res_A, box / 2 - 1)


def iterations(p, box: int, apix: float) -> int:
    """Iterations of one half's schedule: the initial ones, the ramp from the initial to the maximum radius
    at ``radius_step`` per iteration, the final ones."""
    r_init, r_max = radii(p, box, apix)
    return int(p.init_iters + math.ceil(max(0.0, r_max - r_init) / p.radius_step) + p.final_iters)
