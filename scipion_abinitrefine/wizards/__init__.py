"""Scipion wizards of the plugin."""
from .wizards import (  # noqa: F401
    AbInitRefineMaskDiameterWizard,
    AbInitRefineNyquistWizard,
    mask_diameter_A,
    nyquist_A,
)
