"""RELION-convention CTF (ctf.cpp): CTF = -sin(gamma), positive defocus = underfocus.

gamma = -pi*lam*df(theta)*k^2 + (pi/2)*Cs*lam^3*k^4 - phase_shift - atan(Q0/sqrt(1-Q0^2)),
df(theta) = (dU+dV)/2 + (dU-dV)/2*cos(2*(theta - theta_ast)), k in 1/Angstrom, lam in Angstrom.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def wavelength_A(kv) -> np.ndarray:
    """Relativistic electron wavelength (A) for an acceleration voltage in kV."""
    v = np.asarray(kv, dtype=np.float64) * 1e3
    return 12.2643247 / np.sqrt(v * (1.0 + 0.978466e-6 * v))


@dataclass
class CTFParams:
    """Per-particle CTF parameters (arrays of length n)."""

    defocus_u: np.ndarray  # A
    defocus_v: np.ndarray  # A
    defocus_angle: np.ndarray  # deg
    voltage: np.ndarray  # kV
    cs: np.ndarray  # mm
    q0: np.ndarray  # amplitude contrast fraction
    phase_shift: np.ndarray = field(default=None)  # deg

    def __post_init__(self):
        n = len(np.atleast_1d(self.defocus_u))
        for name in ("defocus_u", "defocus_v", "defocus_angle", "voltage", "cs", "q0", "phase_shift"):
            v = getattr(self, name)
            v = np.zeros(n) if v is None else np.asarray(v, dtype=np.float64)
            setattr(self, name, np.broadcast_to(v, (n,)).copy() if v.ndim == 0 or v.size == 1 else v)

    def __len__(self):
        return len(self.defocus_u)

    def subset(self, idx) -> CTFParams:
        return CTFParams(*(getattr(self, f)[idx] for f in self.FIELDS))

    FIELDS = ("defocus_u", "defocus_v", "defocus_angle", "voltage", "cs", "q0", "phase_shift")


def ctf_at(ctf: CTFParams, idx, kx_A, ky_A) -> np.ndarray:
    """CTF of particles ``idx`` at frequencies (kx_A, ky_A) in 1/A -> float32 (len(idx), n_points)."""
    idx = np.atleast_1d(idx)
    kx = np.asarray(kx_A, dtype=np.float64)[None, :]
    ky = np.asarray(ky_A, dtype=np.float64)[None, :]
    lam = wavelength_A(ctf.voltage[idx])[:, None]
    cs = ctf.cs[idx][:, None] * 1e7
    du, dv = ctf.defocus_u[idx][:, None], ctf.defocus_v[idx][:, None]
    ang = np.deg2rad(ctf.defocus_angle[idx])[:, None]
    q0 = ctf.q0[idx][:, None]
    ps = np.deg2rad(ctf.phase_shift[idx])[:, None]
    k2 = kx * kx + ky * ky
    theta = np.arctan2(ky, kx)
    df = 0.5 * (du + dv) + 0.5 * (du - dv) * np.cos(2.0 * (theta - ang))
    gamma = (-np.pi * lam * df * k2 + 0.5 * np.pi * cs * lam**3 * k2 * k2 - ps
             - np.arctan(q0 / np.sqrt(1.0 - q0 * q0)))
    return (-np.sin(gamma)).astype(np.float32)


def ctf_image(ctf: CTFParams, idx, box: int, apix: float) -> np.ndarray:
    """Full centred 2D CTF images (n, box, box) on the grid of :func:`fourier.ft2c` (for tests/plots)."""
    k = (np.arange(box) - box // 2) / (box * apix)
    ky, kx = np.meshgrid(k, k, indexing="ij")
    c = ctf_at(ctf, idx, kx.ravel(), ky.ravel())
    return c.reshape(-1, box, box)
