"""ProtAbInitioRefine end to end in a throwaway Scipion project (headless).

A tiny simulated data set (box 32, 200 particles, CTF) is written as an MRC stack plus a Scipion
SetOfParticles sqlite built in code (Particle locations, CTFModel, Acquisition), imported with
ProtImportParticles (importFrom Scipion), and refined with a few iterations. The outputs are then read back
from the project database in a NEW process and checked against the job's own files:

* used + unused particles = the input (disjoint, same ids), every used particle carries _rlnRandomSubset 1|2;
* each used particle's Transform converts back to the pose the job wrote in particles.star (0.01 deg / A);
* the volume has both half-maps with the input sampling; the FSC is the job's corrected curve;
* the form's validation names the parameter for bad settings (Nyquist, alignment resolution, minibatch,
  symmetry) and accepts good ones.

The case and its checks live in ``protocol_cases.py``, shared with the Scipion-style suite.
"""
import os

import pytest

from scipion_abinitrefine.tests import protocol_cases as C
from scipion_abinitrefine.tests.scipion_env import run_child

CASES = "scipion_abinitrefine.tests.protocol_cases"


@pytest.fixture(scope="module")
def refined(tmp_path_factory):
    root = tmp_path_factory.mktemp("scipion_protocol")
    star, sqlite = C.simulate_data(root / "data")
    run = run_child(f"{CASES}:child_run", root / "scipion", dict(star=star, sqlite=sqlite, tiny=C.TINY), timeout=540)
    out = run_child(f"{CASES}:child_read", root / "scipion", dict(prot_id=run["prot_id"]), timeout=120)
    return run, out, root


def test_validation_names_the_parameter(refined):
    C.check_validation(refined[0])


def test_used_and_unused_particles_partition_the_input(refined):
    C.check_partition(refined[1])


def test_transforms_are_the_job_poses(refined):
    C.check_transforms(refined[1])


def test_relion_converter_keeps_poses_and_half_sets(refined):
    C.check_relion_chain(refined[1])


def test_volume_half_maps_and_fsc(refined):
    C.check_volume_and_fsc(refined[1])


REQUIRE_SLURM = "ABINITREFINE_REQUIRE_SLURM"  # "1" (CI, which starts one: .ci/slurm_up.sh): no stand-in


def test_queue_submission_requests_the_form_resources_and_runs(refined):
    """Scipion's queue path (hosts.conf with a Slurm template): the rendered script asks for the form's threads
    and GPUs, and a run submitted through it finishes: on the Slurm cluster running on this machine when there
    is one (CI starts a one-node cluster), else through a stand-in sbatch that runs the script here, which
    ``ABINITREFINE_REQUIRE_SLURM=1`` refuses."""
    _, _, root = refined
    partition = C.slurm_partition()
    if partition is None and os.environ.get(REQUIRE_SLURM) == "1":
        pytest.fail(f"no Slurm cluster answers here (sinfo shows no ready node) and {REQUIRE_SLURM}=1: start one "
                    "with .ci/slurm_up.sh (root; Debian packages slurmctld slurmd slurm-client munge)")
    res = run_child(f"{CASES}:child_queue", root / "scipion",
                    dict(bindir=str(root / "queue_bin"), tiny=C.TINY, partition=partition), timeout=540)
    C.check_queue(res, C.TINY)


def test_continue_passes_the_checkpoint_to_the_job(refined):
    """Last in this file: restart mode removes the finished job's folder (a restarted job starts afresh)."""
    run, _, root = refined
    C.check_continue_args(run_child(f"{CASES}:child_continue_args", root / "scipion", dict(prot_id=run["prot_id"]),
                                    timeout=120))


def test_workflow_template_loads_the_chain_into_relion(tmp_path):
    """The workflow template shipped with the plugin (import -> this protocol -> RELION local 3D auto-refine ->
    mask -> postprocess) is found by Scipion and loads as that chain, with RELION set for local refinement."""
    star = str(tmp_path / "particles.star")
    res = run_child(f"{CASES}:child_template", tmp_path / "scipion", dict(star=star), timeout=240)
    C.check_template(res, star)
