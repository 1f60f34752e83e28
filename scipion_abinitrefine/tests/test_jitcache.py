"""engine/jitcache.py: the CPU kernels' machine code is cached on disk, reused by the next process, and never
reused after an edit of any source it was built from (kernels_common.py included, which numba alone misses)."""
import os
import shutil
import subprocess
import sys

from scipion_abinitrefine.engine import jitcache

# one kernel call in a fresh process; prints the cache hits of the kernel and whether caching is on
PROBE = """
import numpy as np
from scipion_abinitrefine.engine import fourier, jitcache, kernels_cpu as k
F = np.zeros((16, 16, 16), np.complex64)
R = np.eye(3, dtype=np.float32)[None].repeat(2, 0)
kx, ky = fourier.half_plane_points(3)
k.extract_slices(F, R, kx, ky, 2)
print(jitcache.CACHE, sum(k.extract_slices_kernel.stats.cache_hits.values()))
"""


def _probe(cache_dir):
    env = {**os.environ, "ABINITREFINE_CACHE_DIR": str(cache_dir)}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    on, hits = out.stdout.split()
    return on == "True", int(hits)


def test_second_process_loads_the_kernels_from_the_cache(tmp_path):
    assert _probe(tmp_path) == (True, 0)  # compiled and written
    assert os.listdir(tmp_path) == [jitcache.source_digest()]
    assert any(f.endswith(".nbi") for f in os.listdir(tmp_path / jitcache.source_digest()))
    assert _probe(tmp_path) == (True, 1)  # loaded, not compiled


def test_an_edit_of_any_kernel_source_changes_the_cache_key(tmp_path, monkeypatch):
    src = tmp_path / "engine"
    src.mkdir()
    for name in jitcache.SOURCES:
        shutil.copy(os.path.join(jitcache._HERE, name), src / name)
    monkeypatch.setattr(jitcache, "_HERE", str(src))
    before = jitcache.source_digest()
    assert before == jitcache.source_digest()
    with open(src / "kernels_common.py", "a") as f:  # an inlined helper, not the kernel's own file
        f.write("\n# edited\n")
    assert jitcache.source_digest() != before


def test_no_cache_where_it_cannot_be_written(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):  # root ignores the mode: a path under a regular file cannot be made
            ro = tmp_path / "file"
            ro.write_text("")
        assert _probe(ro) == (False, 0)
        assert _probe("off") == (False, 0)
    finally:
        (tmp_path / "ro").chmod(0o700)
