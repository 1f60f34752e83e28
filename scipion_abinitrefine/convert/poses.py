"""The one place where RELION poses meet Scipion's alignment matrices (docs/design.rst, "Conventions").

RELION poses: Euler angles (rot, tilt, psi) in degrees (ZYZ, ``Euler_angles2matrix``: matrix ``A``) and the
origin (``rlnOriginXAngst/YAngst``) in Angstrom. Scipion stores a projection alignment as the 4x4 matrix

    M = inv([[A, -s], [0, 1]]),   s = (originX, originY, 0) / pixel size

(``A`` equals ``euler_matrix(-rot, -tilt, -psi, 'szyz')``, which is how scipion-em-relion builds it when it
reads a STAR file; it writes the poses back from ``inv(M)``). ``Transform.getShifts()`` of ``M`` is therefore
*not* the image shift: always go through these functions.

Only numpy and the engine's SO(3) helpers are used, so this module also works without Scipion; the
``Transform`` helpers import pwem lazily.
"""
from __future__ import annotations

import numpy as np

from ..engine import so3


def pose_to_matrix(rot, tilt, psi, origin_x, origin_y, apix) -> np.ndarray:
    """RELION pose(s) -> Scipion projection-alignment matrix (4x4, or (n, 4, 4) for arrays).

    Angles in degrees, origins in Angstrom, ``apix`` in Angstrom/pixel.
    """
    A = so3.euler_to_matrix(rot, tilt, psi)
    rot_arr = np.asarray(rot, dtype=np.float64)
    shape = rot_arr.shape
    s = np.zeros(shape + (3,))
    s[..., 0] = np.asarray(origin_x, dtype=np.float64) / float(apix)
    s[..., 1] = np.asarray(origin_y, dtype=np.float64) / float(apix)
    # inv([[A, -s], [0, 1]]) = [[A^T, A^T s], [0, 1]]
    At = np.swapaxes(A, -1, -2)
    M = np.zeros(shape + (4, 4))
    M[..., :3, :3] = At
    M[..., :3, 3] = np.einsum("...ij,...j->...i", At, s)
    M[..., 3, 3] = 1.0
    return M


def matrix_to_pose(M, apix) -> tuple:
    """Scipion projection-alignment matrix (4x4 or (n, 4, 4)) -> (rot, tilt, psi, origin_x, origin_y).

    Angles in degrees with tilt in [0, 180] and rot/psi in (-180, 180]; origins in Angstrom.
    """
    M = np.asarray(M, dtype=np.float64)
    Minv = np.linalg.inv(M)
    A = Minv[..., :3, :3]
    s = -Minv[..., :3, 3]
    rot, tilt, psi = so3.matrix_to_euler(A)
    rot, psi = _wrap(rot), _wrap(psi)
    apix = float(apix)
    return rot, tilt, psi, s[..., 0] * apix, s[..., 1] * apix


def _wrap(a):
    """Angles in degrees into (-180, 180]."""
    a = np.asarray(a, dtype=np.float64)
    w = np.mod(a + 180.0, 360.0) - 180.0
    return np.where(w <= -180.0, w + 360.0, w)


def angle_diff(a, b):
    """Smallest signed difference a - b of angles in degrees, in (-180, 180]."""
    return _wrap(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))


def rotation_distance_deg(rot1, tilt1, psi1, rot2, tilt2, psi2):
    """Geodesic angle (deg) between two sets of ZYZ poses: independent of the Euler representation."""
    return so3.geodesic_deg(so3.euler_to_matrix(rot1, tilt1, psi1), so3.euler_to_matrix(rot2, tilt2, psi2))


def pose_to_transform(rot, tilt, psi, origin_x, origin_y, apix):
    """One RELION pose -> a new Scipion ``Transform`` (projection alignment)."""
    from pwem.objects import Transform

    return Transform(pose_to_matrix(float(rot), float(tilt), float(psi), float(origin_x), float(origin_y), apix))


def set_particle_pose(particle, rot, tilt, psi, origin_x, origin_y, apix):
    """Give ``particle`` a projection alignment built from a RELION pose."""
    particle.setTransform(pose_to_transform(rot, tilt, psi, origin_x, origin_y, apix))


def transform_to_pose(transform, apix) -> tuple:
    """Scipion ``Transform`` (projection alignment) -> (rot, tilt, psi, origin_x, origin_y) as floats."""
    return tuple(float(v) for v in matrix_to_pose(transform.getMatrix(), apix))


def particle_pose(particle, apix) -> tuple:
    """Pose of a Scipion particle with a projection alignment; ``None`` when it has no transform."""
    tr = particle.getTransform()
    if tr is None:
        return None
    return transform_to_pose(tr, apix)
