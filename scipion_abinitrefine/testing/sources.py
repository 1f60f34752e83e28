"""In-memory particle sources for tests and benchmarks (the job reads :class:`engine.io.ParticleSet`)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..engine.ctf import CTFParams


@dataclass
class ArrayParticles:
    """In-memory particle source with the same interface as :class:`io.ParticleSet`."""

    images: np.ndarray
    ctf: CTFParams
    apix: float
    box: int = field(init=False)

    def __post_init__(self):
        self.box = self.images.shape[-1]

    def __len__(self):
        return len(self.images)

    def read_images(self, idx):
        return np.asarray(self.images[np.asarray(idx)], dtype=np.float32)


def search_batch(n: int, snr: float, seed: int, r: float, D: int = 32, apix: float = 4.0):
    """A batch for the pose search's tests: ``n`` simulated images of the demo phantom (box D) at points within
    Fourier radius r, in noise-sigma units. Returns (D, X, C, s2, kx, ky, r, G): image values and CTF at the
    points, a flat noise variance at the images' mean power, the true map's padded transform."""
    from ..engine import fourier, simulate
    from ..engine.ctf import ctf_at

    vol = simulate.make_phantom(D, apix)
    images, truth = simulate.simulate_particles(vol, n, apix, snr=snr, seed=seed)
    kx, ky = fourier.half_plane_points(r)
    X = fourier.gather_points(fourier.ft2c(images / truth["noise_sigma"]), kx, ky).astype(np.complex64)
    C = ctf_at(truth["ctf"], np.arange(len(images)), kx / (D * apix), ky / (D * apix))
    s2 = np.full(len(kx), float((np.abs(X) ** 2).mean()), np.float32)
    G = fourier.volume_to_fourier(vol / truth["noise_sigma"], 2)
    return D, X, C, s2, kx, ky, r, G
