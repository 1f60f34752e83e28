"""Constants shared by the Scipion protocol, wizards and viewers (no Scipion import here)."""

# Defaults of the protocol form, named after CryoSPARC's Ab-Initio Reconstruction / Homogeneous Ab-Initio
# Refinement parameters (docs/design.rst, "Parameters").
DEFAULT_MAX_RES = 6.0  # A (CryoSPARC ab-initio: 12 A; HAIR pushes to ~3 A)
DEFAULT_INIT_RES = 35.0  # A
DEFAULT_INIT_MINIBATCH = 90
DEFAULT_FINAL_MINIBATCH = 300
DEFAULT_MINIBATCH_SWITCH = 300
DEFAULT_INIT_ITERS = 200
DEFAULT_FINAL_ITERS = 300
DEFAULT_RADIUS_STEP = 0.04
DEFAULT_INIT_LR = 0.4
DEFAULT_LR_DURATION = 100
DEFAULT_TARGET_ESS = 0.011
DEFAULT_ALIGN_RES = 20.0  # A: the half-maps are never aligned beyond this resolution
DEFAULT_ALIGN_EVERY = 50
DEFAULT_SEED = 0
DEFAULT_POSE_SAMPLES = 32
DEFAULT_N_STARTS = 8

# Fraction of the box extent used by the window/mask diameter wizard (the engine's automatic window)
MASK_DIAMETER_FRACTION = 0.85

# Symmetry: only C1 is implemented (ab-initio in C1 is the CryoSPARC default)
SYMMETRY_CHOICES = ["C1"]

# Files written by the job (``abinitrefine run --out DIR``)
JOB_DIR = "job"
INPUT_STAR = "input_particles.star"
OUT_PARTICLES = "particles.star"
OUT_UNUSED = "unused.star"
OUT_HALF_A = "half_map_A.mrc"
OUT_HALF_B = "half_map_B.mrc"
OUT_MAP = "map.mrc"
OUT_FSC = "fsc.csv"
OUT_LOG = "log.json"
OUT_RESULT = "result.json"
CHECKPOINT = "checkpoint.npz"

# FSC threshold used for the gold-standard resolution
FSC_THRESHOLD = 0.143

# Name of the extra attribute carrying the half-set id (1|2) on every output particle
HALF_SET_ATTR = "_rlnRandomSubset"
