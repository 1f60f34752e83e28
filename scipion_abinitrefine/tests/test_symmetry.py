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
