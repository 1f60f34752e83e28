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
