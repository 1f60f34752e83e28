"""Scipion protocols of the plugin."""
from .protocol_abinitio_refine import ProtAbInitioRefine  # noqa: F401
