"""Point-group symmetry in RELION's conventions: the rotation matrices of C1, Cn, Dn, T, O and I (I1-I4).

Each group is the closure of two rotations about RELION's axes (``relion_refine --sym X
--print_symmetry_ops`` prints the same sets; ``tests/test_symmetry.py`` checks them against it): Cn about z;
Dn adds a 2-fold about x; T a 3-fold about z and a 2-fold about (0, sqrt(2/3), sqrt(1/3)); O 4-folds about z
and x; I (= I2) 2-folds about x, y, z and 5-folds in the xz plane; I1 the same turned 90 deg about y; I3 and
I4 a 5-fold about z and a 2-fold at -/+ 31.7 deg from z in the xz plane.

Matrices act on map coordinates (x, y, z). A map V is symmetric when V(S x) = V(x) for every S; the images
of a particle seen at projection matrix A are also images at A S for every S, which is how the job inserts
them (``reconstruct.backproject``).
"""
from __future__ import annotations

import functools
import re

import numpy as np

_GOLDEN = (1 + 5 ** 0.5) / 2
_I2_5FOLD = np.array([1.0, 0.0, _GOLDEN]) / np.sqrt(1 + _GOLDEN ** 2)  # (0.526, 0, 0.851)


class SymmetryError(ValueError):
    """A symmetry name this job does not know."""


def _rot(axis, n: int) -> np.ndarray:
    """Rotation by 360/n deg about ``axis`` (Rodrigues)."""
    a = np.asarray(axis, np.float64)
    a = a / np.linalg.norm(a)
    t = 2 * np.pi / n
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(t) * K + (1 - np.cos(t)) * K @ K


def _generators(name: str) -> list[np.ndarray]:
    m = re.fullmatch(r"([CD])(\d+)", name)
    if m:
        n = int(m.group(2))
        if n < 1 or (m.group(1) == "D" and n < 2):
            raise SymmetryError(f"symmetry {name!r}: the order must be >= 1 for C and >= 2 for D")
        gens = [_rot([0, 0, 1], n)]
        return gens + ([_rot([1, 0, 0], 2)] if m.group(1) == "D" else [])
    if name == "T":
        return [_rot([0, 0, 1], 3), _rot([0, np.sqrt(2 / 3), np.sqrt(1 / 3)], 2)]
    if name == "O":
        return [_rot([0, 0, 1], 4), _rot([1, 0, 0], 4)]
    if name in ("I", "I2"):
        return [_rot([0, 0, 1], 2), _rot(_I2_5FOLD, 5)]
    if name == "I1":
        return [_rot([1, 0, 0], 2), _rot([_I2_5FOLD[2], 0, -_I2_5FOLD[0]], 5)]
    if name in ("I3", "I4"):
        s = -1.0 if name == "I3" else 1.0
        return [_rot([0, 0, 1], 5), _rot([s * _I2_5FOLD[0], 0, _I2_5FOLD[2]], 2)]
    raise SymmetryError(f"unknown symmetry {name!r}: use C1, Cn, Dn (n >= 2), T, O or I (I1-I4), as in RELION")


@functools.lru_cache(maxsize=32)
def _group(name: str) -> tuple:
    gens = _generators(name)
    ops = [np.eye(3)]
    queue = [np.eye(3)]
    while queue:  # breadth first: every element a shortest word in the generators (rounding stays ~1e-15)
        e = queue.pop(0)
        for g in gens:
            h = e @ g
            if not any(np.abs(h - o).max() < 1e-6 for o in ops):
                ops.append(h)
                queue.append(h)
        if len(ops) > 120:
            raise SymmetryError(f"symmetry {name!r} did not close into a point group")
    return tuple(ops)


def normalise(name: str) -> str:
    """RELION's spelling of a symmetry name ('c1' -> 'C1', ' d7 ' -> 'D7'); raises SymmetryError if unknown."""
    s = str(name).strip().upper()
    _generators(s)
    return s


# The Scipion form's layout (as the cryosparc2 plugin's): a group and, for C and D, an order; the names are
# RELION's (I = I2), so the string the job gets is the one a RELION job downstream takes.
FORM_GROUPS = ("Cn (cyclic)", "Dn (dihedral, 2-fold on x)", "T (tetrahedral)", "O (octahedral)",
               "I1 (icosahedral)", "I2 (icosahedral, RELION's I)", "I3 (icosahedral)", "I4 (icosahedral)")
_FORM_NAMES = ("C", "D", "T", "O", "I1", "I2", "I3", "I4")


def from_group_order(group: int, order: int) -> str:
    """RELION's symmetry name of the form's (group index into ``FORM_GROUPS``, order): (0, 7) -> 'C7',
    (1, 2) -> 'D2', (2, any) -> 'T'. Not checked: :func:`normalise` says what is wrong with e.g. 'C0'."""
    name = _FORM_NAMES[int(group)]
    return f"{name}{int(order)}" if name in ("C", "D") else name


def to_group_order(name: str) -> tuple[int, int]:
    """The form's (group index, order) of a symmetry name (inverse of :func:`from_group_order`)."""
    s = normalise(name)
    s = "I2" if s == "I" else s
    if s[0] in "CD":
        return _FORM_NAMES.index(s[0]), int(s[1:])
    return _FORM_NAMES.index(s), 1


def asymmetric_unit(rotations: np.ndarray, ops: np.ndarray, tol: float = 1e-4) -> np.ndarray:
    """The rotations of a grid (n, 3, 3) that lie in one asymmetric unit of SO(3) under the group ``ops``.

    Poses A and A S (S in the group) see the same symmetric map: one of each class is enough. The unit kept
    is the one around the identity: A with trace(A) >= trace(A S) for every S (the rotation angle of A is the
    smallest in its class), ties on its border kept. With C1 the grid itself is returned.
    """
    if len(ops) == 1:
        return rotations
    R = np.asarray(rotations, np.float64)
    tr = np.einsum("nij,sji->ns", R, np.asarray(ops, np.float64))  # trace(A S) for every A, S
    return rotations[tr[:, 0] >= tr.max(axis=1) - tol]


def operators(name: str) -> np.ndarray:
    """The group's rotation matrices (n, 3, 3), the identity first."""
    return np.array(_group(normalise(name)))
