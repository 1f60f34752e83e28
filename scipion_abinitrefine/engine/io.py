"""Particle STAR files and MRC maps/stacks (no Scipion import): one import for the rest of the engine.

STAR files follow RELION 3.1 (``data_optics`` + ``data_particles``); RELION 3.0 style files are read too
(:mod:`star`). Maps and stacks are MRC files read through memory maps (:mod:`mrc`). Particles are a
:class:`particles.ParticleSet` (:mod:`particles`). Every problem with user input raises
:class:`ParticleInputError` naming the file and what to do.
"""
from __future__ import annotations

from .mrc import ParticleInputError, open_stack, read_mrc, release_pages, write_mrc, write_stack
from .particles import _SCORE_COLUMNS, ParticleSet, ParticleSource
from .star import read_star, write_star

__all__ = [
    "ParticleInputError", "ParticleSet", "ParticleSource", "read_star", "write_star", "read_mrc", "write_mrc",
    "write_stack", "open_stack", "release_pages", "_SCORE_COLUMNS",
]
