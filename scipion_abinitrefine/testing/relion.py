"""RELION 3.1 (Debian's ``relion`` package) run on this job's outputs, for the chain test and bench/.

:func:`run_local_refine` runs ``relion_refine_mpi --auto_refine`` with local searches from the first iteration
from a job directory's ``particles.star`` (poses, half-sets) and ``map.mrc``, as a user chaining into local
refinement would; :func:`compare` reads RELION's result back against ours (and the truth when given).
"""
from __future__ import annotations

import os
import resource
import shutil
import subprocess
import time

import numpy as np

from ..engine import fsc, io, so3
from .metrics import pose_errors

# the leader rank mostly waits: yielding when idle leaves more of its core to the two half-set ranks
ENV = dict(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1",
           OMPI_MCA_mpi_yield_when_idle="1")
MISSING = ("RELION's relion_refine_mpi and mpirun are not installed (Debian/Ubuntu: apt-get install relion "
           "openmpi-bin)")


def available() -> bool:
    return bool(shutil.which("relion_refine_mpi") and shutil.which("mpirun"))


def run_local_refine(job_dir: str, diameter_A: float, ini_high_A: float, ranks: int = 3) -> dict:
    """Local 3D auto-refine (healpix order 4 = 3.7 deg, sigma_ang 2 deg: +-6 deg; offsets +-3 px) into
    ``job_dir/relion``. Auto-refine needs a leader and one rank per half-set (>= 3 ranks)."""
    return run_auto_refine(job_dir, "particles.star", "map.mrc", diameter_A, ini_high_A, ranks, local=True)


def run_auto_refine(job_dir: str, star: str, ref: str, diameter_A: float, ini_high_A: float, ranks: int = 3,
                    local: bool = False, offset_range: float = 5, max_iter: int | None = None) -> dict:
    """3D auto-refine of ``star`` from ``ref`` (paths relative to ``job_dir``) into ``job_dir/relion``.
    ``local``: local searches from the first iteration around the star's poses (as above); else RELION's
    standard global refinement: healpix order 2 (7.5 deg) over the whole sphere, offsets +-5 px, local
    searches from order 4 on, as a user refining from a low-resolution model runs it. ``offset_range``: the
    global search's offsets (px; RELION's cost grows with their number, ~pi r^2); ``max_iter``: stop after that
    many iterations (``--iter``) if not converged before."""
    search = (["--healpix_order", "4", "--sigma_ang", "2", "--offset_range", "3"] if local else
              ["--healpix_order", "2", "--offset_range", f"{offset_range:g}"])
    cmd = ["mpirun", "--oversubscribe", "-np", str(ranks), "relion_refine_mpi", "--o", "relion/run",
           "--auto_refine", "--split_random_halves", "--i", star, "--ref", ref,
           "--ini_high", str(ini_high_A), "--ctf", "--particle_diameter", str(diameter_A), "--flatten_solvent",
           "--zero_mask", "--oversampling", "1", *search, "--auto_local_healpix_order", "4",
           "--offset_step", "1", "--sym", "C1",
           "--low_resol_join_halves", "40", "--norm", "--scale", "--pad", "2", "--j", "1", "--pool", "10",
           "--dont_combine_weights_via_disc"] + (["--iter", str(max_iter)] if max_iter else [])
    os.makedirs(os.path.join(job_dir, "relion"), exist_ok=True)
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    p = subprocess.run(cmd, cwd=job_dir, capture_output=True, text=True, env={**os.environ, **ENV})
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode:
        raise RuntimeError(f"relion_refine_mpi failed (exit {p.returncode}): {p.stdout[-1500:]}\n{p.stderr[-1500:]}")
    return dict(cmd=" ".join(cmd), wall_s=time.time() - t0,
                cpu_s=(c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime))


def read_relative(star: str, cwd: str):
    """RELION writes image names relative to the directory it ran in."""
    here = os.getcwd()
    os.chdir(cwd)
    try:
        return io.read_star(star)
    finally:
        os.chdir(here)


def own_resolution(model_star: str) -> float | None:
    """RELION's own resolution estimate (A) in a ``*_model.star`` (``_rlnCurrentResolution``), or None."""
    own = None
    with open(model_star) as f:
        for line in f:
            if line.startswith("_rlnCurrentResolution"):
                own = float(line.split()[1])
    return own


def compare(job_dir: str, apix: float, truth: dict | None = None) -> dict:
    """RELION's local refinement against ours: median pose change (deg; 90th percentile), origin change (A),
    whether every particle kept its half-set, the gold-standard resolution of RELION's half-maps by this
    project's FSC (masked, corrected), RELION's own final resolution, and with ``truth`` (rot, tilt, psi per
    stack index) the median angular error of ours and of RELION's poses (one global rotation, both hands)."""
    ours = io.read_star(os.path.join(job_dir, "particles.star"))
    rel = read_relative(os.path.join(job_dir, "relion", "run_data.star"), job_dir)
    pos = {int(k): i for i, k in enumerate(ours.stack_index)}
    idx = np.array([pos[int(k)] for k in rel.stack_index])
    R_ours = so3.euler_to_matrix(ours.rot[idx], ours.tilt[idx], ours.psi[idx])
    R_rel = so3.euler_to_matrix(rel.rot, rel.tilt, rel.psi)
    turn = so3.geodesic_deg(R_ours, R_rel)
    h1, _ = io.read_mrc(os.path.join(job_dir, "relion", "run_half1_class001_unfil.mrc"))
    h2, _ = io.read_mrc(os.path.join(job_dir, "relion", "run_half2_class001_unfil.mrc"))
    out = dict(n=len(rel), n_ours=len(ours), pose_change_median_deg=float(np.median(turn)),
               pose_change_p90_deg=float(np.percentile(turn, 90)),
               shift_change_median_A=float(np.median(np.hypot(rel.origin_x - ours.origin_x[idx],
                                                               rel.origin_y - ours.origin_y[idx]))),
               half_kept=bool(np.all(rel.half == ours.half[idx])),
               relion_gold_standard_A=float(fsc.gold_standard_fsc(h1, h2, apix)["resolution"]))
    own = own_resolution(os.path.join(job_dir, "relion", "run_model.star"))
    if own is not None:
        out["relion_own_resolution_A"] = own
    if truth is not None:
        R_true = so3.euler_to_matrix(truth["rot"], truth["tilt"], truth["psi"])[rel.stack_index]
        out["err_ours_deg"] = float(np.median(pose_errors(R_ours, R_true)[0]))
        out["err_relion_deg"] = float(np.median(pose_errors(R_rel, R_true)[0]))
    return out
