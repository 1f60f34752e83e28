"""The Scipion-free engine of scipion-em-abinitrefine: RELION STAR + MRC input, pose search, SGD per
half-set, half-map alignment, gold-standard FSC and the convergence verdict (see ``docs/design.rst``).

Nothing in this package imports Scipion (``pyworkflow``/``pwem``); the Scipion layer calls it through the
``abinitrefine`` command line.
"""
