"""numba's on-disk cache for the CPU kernels, invalidated by every source they are built from.

Compiling the kernels takes ~20-30 s of one core at every start of a job (a tenth of the demo's wall time,
with the other core idle). numba's own cache checks only the file that defines a kernel, not the helpers
``kernels_common.py`` inlines into it, so an edit there would run stale machine code. This locator keys the
cache on a digest of the engine's kernel sources and numba's version: any edit compiles afresh.

The cache lives in ``$ABINITREFINE_CACHE_DIR``, else ``$XDG_CACHE_HOME/scipion-abinitrefine/numba``, else
``~/.cache/scipion-abinitrefine/numba``; where it cannot be written the kernels are not cached (compiled at
every start, as before). ``ABINITREFINE_CACHE_DIR=off`` switches the cache off.
"""
from __future__ import annotations

import hashlib
import os
import sys
import tempfile

_HERE = os.path.dirname(os.path.abspath(__file__))
# the files whose kernels are cached, and every file their machine code depends on
KERNEL_FILES = ("kernels_cpu.py", "align.py")
SOURCES = ("kernels_common.py", "kernels_cpu.py", "align.py")


def cache_dir() -> str | None:
    d = os.environ.get("ABINITREFINE_CACHE_DIR")
    if d == "off":
        return None
    if not d:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        d = os.path.join(base, "scipion-abinitrefine", "numba")
    return d


def source_digest() -> str:
    import numba

    h = hashlib.sha256(f"{numba.__version__} {sys.version_info[:2]}".encode())
    for name in SOURCES:
        with open(os.path.join(_HERE, name), "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:20]


def enabled() -> bool:
    """True when the kernels below are compiled with ``cache=True`` (numba's locator API is as expected)."""
    try:
        from numba.core.caching import CacheImpl, _CacheLocator  # noqa: F401
    except ImportError:
        return False
    return cache_dir() is not None


def install() -> bool:
    """Put this package's locator first in numba's list (once); False when caching is off or impossible."""
    if not enabled():
        return False
    from numba.core.caching import CacheImpl, _CacheLocator

    if any(getattr(c, "_abinitrefine", False) for c in CacheImpl._locator_classes):
        return True
    digest = source_digest()
    root = os.path.join(cache_dir(), digest)
    try:
        os.makedirs(root, exist_ok=True)
        tempfile.TemporaryFile(dir=root).close()
    except OSError:
        return False  # kernels compiled at every start; never numba's in-tree cache (blind to kernels_common)

    class KernelSourcesLocator(_CacheLocator):
        _abinitrefine = True

        def __init__(self, py_file):
            self._py_file = py_file

        def get_cache_path(self):
            return root

        def get_source_stamp(self):
            return digest

        def get_disambiguator(self):
            return os.path.splitext(os.path.basename(self._py_file))[0]

        @classmethod
        def from_function(cls, py_func, py_file):
            here = os.path.normcase(os.path.dirname(os.path.abspath(py_file)))
            if here != os.path.normcase(_HERE) or os.path.basename(py_file) not in KERNEL_FILES:
                return None
            return cls(py_file)

    CacheImpl._locator_classes = [KernelSourcesLocator, *CacheImpl._locator_classes]
    return True


CACHE = install()
