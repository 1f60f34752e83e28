"""Scipion objects <-> engine arrays: poses (one convention, in :mod:`.poses`), CTF, images, half-set ids."""
from .particles import (  # noqa: F401
    ParticleConversionError,
    particles_to_engine,
    read_job_keys,
    read_job_particles,
    read_job_scores,
    stack_key,
    write_input_star,
)
from .poses import (  # noqa: F401
    angle_diff,
    matrix_to_pose,
    particle_pose,
    pose_to_matrix,
    pose_to_transform,
    rotation_distance_deg,
    set_particle_pose,
    transform_to_pose,
)
