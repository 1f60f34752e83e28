"""Names and thresholds the job, the command line, the Scipion protocol and the viewer share (stdlib only:
the Scipion layer imports it through ``scipion_abinitrefine.constants``)."""

# files the job writes in its output directory (``abinitrefine run --out DIR``)
OUT_PARTICLES = "particles.star"
OUT_UNUSED = "unused.star"
OUT_HALF_A = "half_map_A.mrc"
OUT_HALF_B = "half_map_B.mrc"
OUT_MAP = "map.mrc"
OUT_FSC = "fsc.csv"
OUT_FSC_STAR = "fsc.star"
OUT_LOG = "log.json"
OUT_RESULT = "result.json"  # written last: the manifest of a complete set
CHECKPOINT = "checkpoint.npz"
FIG_FSC, FIG_SLICES, FIG_ANGDIST, FIG_CONVERGENCE = "fsc.png", "slices.png", "angdist.png", "convergence.png"
FIGURES = (FIG_FSC, FIG_SLICES, FIG_ANGDIST, FIG_CONVERGENCE)
# files that mark a directory as holding a job's outputs (result.json last)
OUTPUTS = (OUT_PARTICLES, OUT_UNUSED, OUT_HALF_A, OUT_HALF_B, OUT_MAP, OUT_FSC, OUT_FSC_STAR) + FIGURES + (
    OUT_LOG, OUT_RESULT)

# FSC thresholds: the gold-standard resolution (two independent half-maps, Rosenthal & Henderson 2003), and
# the one for a map against a noise-free reference (the truth in benchmarks)
FSC_GOLD = 0.143
FSC_TRUTH = 0.5

# the gold-standard FSC curves the job writes (fsc.csv columns) and their labels in RELION's postprocess
FSC_CURVES = (("fsc_corrected", "Corrected"), ("fsc_unmasked", "Unmasked Maps"), ("fsc_masked", "Masked Maps"),
              ("fsc_randomized", "Phase Randomized Masked Maps"))

# the automatic window/mask diameter, as a fraction of the box extent (engine and the form's wizard)
AUTO_MASK_FRACTION = 0.85
