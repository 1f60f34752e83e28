"""Point groups in RELION's conventions (engine/symmetry.py): orders, closure, and the very matrices RELION
prints for the same symbol (Debian's RELION: skipped with the reason without it, required in CI)."""
import os
import re
import subprocess

import numpy as np
import pytest

from scipion_abinitrefine.engine import symmetry
from scipion_abinitrefine.testing import relion

ORDERS = {"C1": 1, "C2": 2, "C7": 7, "D2": 4, "D3": 6, "D7": 14, "T": 12, "O": 24, "I": 60, "I1": 60, "I2": 60,
          "I3": 60, "I4": 60}


def test_groups_are_closed_rotations_of_the_right_order():
    for name, n in ORDERS.items():
        G = symmetry.operators(name)
        assert G.shape == (n, 3, 3), name
        assert np.allclose(G[0], np.eye(3))
        assert np.allclose(np.einsum("nij,nkj->nik", G, G), np.eye(3), atol=1e-9), name  # orthogonal
        assert np.allclose(np.linalg.det(G), 1.0), name  # proper rotations: no mirror
        prods = np.einsum("aij,bjk->abik", G, G).reshape(-1, 9)
        dist = np.abs(prods[:, None, :] - G.reshape(1, -1, 9)).max(axis=2)
        assert dist.min(axis=1).max() < 1e-9, name  # closed under products


@pytest.mark.parametrize("bad", ["C0", "D1", "X3", "I5", "", "C2.5"])
def test_unknown_names_are_refused_with_the_choices(bad):
    with pytest.raises(symmetry.SymmetryError, match="C1|order"):
        symmetry.operators(bad)


def _relion_ops(name):
    out = subprocess.run(["relion_refine", "--sym", name, "--print_symmetry_ops"], capture_output=True, text=True,
                         env={**os.environ, **relion.ENV}).stdout
    lines = out.splitlines()
    return np.array([[[float(x) for x in lines[i + k].split()] for k in (1, 2, 3)]
                     for i, line in enumerate(lines) if re.match(r"\s*R\(\d+\)=", line)])


def test_the_matrices_are_relions():
    if not relion.available():
        if os.environ.get("ABINITREFINE_REQUIRE_RELION") == "1":
            pytest.fail(relion.MISSING)
        pytest.skip(relion.MISSING)
    for name in ORDERS:
        ours, theirs = symmetry.operators(name), _relion_ops(name)
        assert len(theirs) == len(ours), name
        dist = np.abs(ours.reshape(-1, 1, 9) - theirs.reshape(1, -1, 9)).max(axis=2)
        assert dist.min(axis=1).max() < 1e-4 and dist.min(axis=0).max() < 1e-4, name  # the same set


def _turn(a, axes):
    """A 180 deg turn of a map about the axis not in ``axes`` (array axes z=0, y=1, x=2): index i -> D - i
    about the centre voxel D // 2, exact on the grid."""
    return np.roll(np.flip(a, axes), 1, axis=axes)


D2_TURNS = ((1, 2), (0, 1), (0, 2))  # about z, x, y: RELION's D2 = {1, diag(-1,-1,1), diag(1,-1,-1), diag(-1,1,-1)}


def _d2_asymmetry(vol):
    """1 - the worst correlation of a map with its D2 turns (0 for a D2-symmetric map)."""
    v = vol - vol.mean()
    return 1.0 - min(float(np.sum(v * _turn(v, ax)) / np.sum(v * v)) for ax in D2_TURNS)


def test_sgd_with_symmetry_gives_a_symmetric_map_closer_to_the_truth():
    """A D2 particle, 400 images at SNR 0.1 (box 32, 4 A/px): the D2 run's model and final half-map are D2
    symmetric, and, from the same images and random stream, closer to the truth than the C1 run's."""
    from scipion_abinitrefine.engine import align, fsc, sgd, simulate
    from scipion_abinitrefine.testing import sources

    v = simulate.make_phantom(32, 4.0)
    truth = (v + sum(_turn(v, ax) for ax in D2_TURNS)) / 4
    assert _d2_asymmetry(truth) < 1e-6
    images, t = simulate.simulate_particles(truth, 400, 4.0, snr=0.1, seed=5)
    data = sources.ArrayParticles(images, t["ctf"], 4.0)
    p = dict(max_res_A=12.0, init_res_A=35.0, init_iters=40, final_iters=20, radius_step=0.2, init_minibatch=100,
             final_minibatch=100, minibatch_switch_iter=40, lr_duration=30, seed=1)
    score = {}
    for sym in ("D2", "C1"):
        run = sgd.SGDRun(data, np.arange(len(data)), sgd.SGDParams(**p, symmetry=sym))
        while not run.done:
            run.step()
        model = run.model_volume()
        if sym == "D2":
            assert _d2_asymmetry(model) < 0.02, _d2_asymmetry(model)
            half_map = run.final_pass()
            assert _d2_asymmetry(half_map) < 0.02, _d2_asymmetry(half_map)
        aln = align.align_maps(truth, model, 4.0, max_res_A=15.0, hands=True)
        curve = fsc.fsc_curve(align.transform_map(model, aln), truth, fsc.soft_auto_mask(truth, 4.0))
        score[sym] = float(np.mean(curve[2:11]))  # shells to 12 A
    print("mean FSC to the truth over shells 2-10:", score)
    assert score["D2"] > score["C1"] + 0.01, score


def test_the_search_grid_of_one_asymmetric_unit_covers_every_pose():
    """Every rotation of the base grid has a symmetry mate in the unit kept for the search, and the unit holds
    about 1/|G| of the grid (ties on its border kept): the search loses no pose and does |G| x less work."""
    from scipion_abinitrefine.engine import search, so3

    base = search.base_rotations().astype(np.float64)
    assert symmetry.asymmetric_unit(search.base_rotations(), symmetry.operators("C1")) is search.base_rotations()
    step = so3.base_step_deg()
    for name in ("C2", "D3", "T", "O", "I"):
        G = symmetry.operators(name)
        unit = symmetry.asymmetric_unit(base, G)
        assert len(base) / len(G) <= len(unit) <= 1.1 * len(base) / len(G) + 4, (name, len(unit))
        # the nearest kept rotation to some mate of every grid rotation: within a grid step
        mates = np.einsum("nij,sjk->nsik", base[::7], G).reshape(-1, 3, 3)
        cos = (np.einsum("aij,bij->ab", mates, unit) - 1) / 2  # cos of the angle between rotations
        best = np.degrees(np.arccos(np.clip(cos.reshape(len(base[::7]), len(G), -1).max(axis=(1, 2)), -1, 1)))
        assert best.max() < step, (name, best.max())


def test_form_group_and_order_round_trip():
    """The Scipion form's (group, order) and RELION's names map one to one (I is I2, as in RELION)."""
    for name in ("C1", "C7", "D2", "D7", "T", "O", "I1", "I2", "I3", "I4"):
        g, n = symmetry.to_group_order(name)
        assert symmetry.from_group_order(g, n) == name
        assert symmetry.FORM_GROUPS[g].startswith(name[0])
    assert symmetry.to_group_order("i") == symmetry.to_group_order("I2")
    assert symmetry.from_group_order(2, 9) == "T"  # the order matters for C and D only
