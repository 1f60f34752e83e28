"""Homogeneous ab-initio refinement for Scipion 3.

The numerical engine lives in :mod:`scipion_abinitrefine.engine` and never imports Scipion; it can be
used alone through the ``abinitrefine`` command line. The Scipion plugin class below is only defined
when Scipion (pwem) is installed, so that the engine works in a plain Python environment too.
"""
from ._version import __version__

_logo = None
_references = ["Punjani2017", "Kim2025", "AbInitRefine"]

PYTHON_VAR = "ABINITREFINE_PYTHON"  # optional: the Python that runs the engine (default: Scipion's own)

try:  # Scipion is optional for the engine and the CLI
    import pwem as _pwem
except ImportError:  # pragma: no cover - exercised in Scipion-free installs
    _pwem = None

if _pwem is not None:

    class Plugin(_pwem.Plugin):
        """Scipion plugin entry: pure Python (numba), nothing to install in EM_ROOT."""

        _url = "https://github.com/scipion-em/scipion-em-abinitrefine"
        _supportedVersions = [__version__]

        @classmethod
        def _defineVariables(cls):
            cls._defineVar(PYTHON_VAR, "", description="Python interpreter that runs the engine "
                                                       "(empty: the one running Scipion)")

        @classmethod
        def getPython(cls):
            """Python interpreter that runs ``-m scipion_abinitrefine.cli`` (the engine is pure Python)."""
            import sys

            return cls.getVar(PYTHON_VAR) or sys.executable

        @classmethod
        def defineBinaries(cls, env):
            pass
