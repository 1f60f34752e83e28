"""Scipion viewers of the plugin."""
from .viewer_abinitio_refine import AbInitioRefineViewer  # noqa: F401
