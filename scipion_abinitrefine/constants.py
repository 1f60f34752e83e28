"""Constants shared by the Scipion protocol, wizards and viewers (no Scipion import here).

The job's parameters (defaults, labels, help, bounds) are the engine's table, ``engine/params.py``; the names of
the job's files and the FSC thresholds are ``engine/names.py``: both are re-read here, never copied.
"""
from .engine.names import AUTO_MASK_FRACTION as MASK_DIAMETER_FRACTION  # noqa: F401 (the wizard's window)
from .engine.names import (  # noqa: F401 (re-exported for the Scipion layer)
    CHECKPOINT,
    FSC_CURVES,
    FSC_GOLD,
    OUT_FSC,
    OUT_HALF_A,
    OUT_HALF_B,
    OUT_LOG,
    OUT_MAP,
    OUT_PARTICLES,
    OUT_RESULT,
    OUT_UNUSED,
)

# Files of the protocol's extra directory
JOB_DIR = "job"
INPUT_STAR = "input_particles.star"

# FSC threshold used for the gold-standard resolution
FSC_THRESHOLD = FSC_GOLD

# Name of the extra attribute carrying the half-set id (1|2) on every output particle
HALF_SET_ATTR = "_rlnRandomSubset"
