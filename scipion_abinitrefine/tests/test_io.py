"""STAR/MRC input-output: round trips, RELION 3.0 input and clear errors on bad input."""
import os
import pickle

import numpy as np
import pytest
from emtable import Table

from scipion_abinitrefine.engine import io
from scipion_abinitrefine.engine.ctf import CTFParams
from scipion_abinitrefine.engine.io import ParticleInputError
from scipion_abinitrefine.testing.sources import ArrayParticles


def _stack(path, n, box, apix, seed=0):
    imgs = np.random.default_rng(seed).normal(size=(n, box, box)).astype(np.float32)
    io.write_stack(path, imgs, apix)
    return imgs


def _star_text(blocks):
    """blocks: list of (name, {column: values}) -> STAR text (loops)."""
    out = []
    for name, cols in blocks:
        out.append(f"\ndata_{name}\n\nloop_\n")
        out += [f"_{c} #{k + 1}\n" for k, c in enumerate(cols)]
        out += [" ".join(str(v) for v in row) + "\n" for row in zip(*cols.values())]
        out.append("\n")
    return "".join(out)


def _write30(path, cols):
    path.write_text(_star_text([("", cols)]))
    return path


def _cols30(n, stack="stack.mrcs", **extra):
    cols = {
        "rlnImageName": [f"{i + 1:06d}@{stack}" for i in range(n)],
        "rlnDefocusU": [10000 + 0.5 * i for i in range(n)],
        "rlnDefocusV": [9000 + i for i in range(n)],
        "rlnDefocusAngle": [10.0 * i for i in range(n)],
        "rlnVoltage": [300] * n,
        "rlnSphericalAberration": [2.7] * n,
        "rlnAmplitudeContrast": [0.1] * n,
        "rlnImagePixelSize": [2.0] * n,
    }
    cols.update(extra)
    return cols


@pytest.fixture
def two_stacks(tmp_path):
    """A particle set on two stacks: one below the STAR directory, one outside it."""
    star_dir = tmp_path / "job"
    (star_dir / "Particles").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    box, apix = 16, 1.5
    s1, s2 = str(star_dir / "Particles" / "a.mrcs"), str(tmp_path / "elsewhere" / "b.mrcs")
    imgs = {s1: _stack(s1, 7, box, apix, 1), s2: _stack(s2, 5, box, apix, 2)}
    rng = np.random.default_rng(5)
    paths = np.array([s1] * 7 + [s2] * 5, dtype=object)
    sidx = np.r_[np.arange(7), np.arange(5)][::-1].copy()
    paths = paths[::-1].copy()
    n = len(paths)
    ctf = CTFParams(rng.uniform(8000, 25000, n), rng.uniform(8000, 25000, n), rng.uniform(-180, 180, n),
                    np.where(np.arange(n) < 6, 300.0, 200.0), np.full(n, 2.7), np.full(n, 0.1),
                    rng.uniform(0, 90, n))
    ps = io.ParticleSet(image_names=[f"{k + 1:06d}@{p}" for k, p in zip(sidx, paths)], stack_paths=paths,
                        stack_index=sidx, apix=apix, box=box, ctf=ctf,
                        rot=rng.uniform(-180, 180, n), tilt=rng.uniform(0, 180, n),
                        psi=rng.uniform(-180, 180, n),
                        origin_x=rng.uniform(-5, 5, n), origin_y=rng.uniform(-5, 5, n),
                        half=rng.integers(1, 3, n), micrograph=[f"mics/mic_{i % 3}.mrc" for i in range(n)])
    return ps, imgs, star_dir


def test_roundtrip_31(two_stacks):
    ps, imgs, star_dir = two_stacks
    star = star_dir / "particles.star"
    io.write_star(star, ps)
    back = io.read_star(star)

    assert len(back) == len(ps) and back.box == ps.box and back.apix == pytest.approx(ps.apix)
    assert list(back.stack_paths) == list(ps.stack_paths)
    np.testing.assert_array_equal(back.stack_index, ps.stack_index)
    for f in CTFParams.FIELDS:
        np.testing.assert_allclose(getattr(back.ctf, f), getattr(ps.ctf, f), atol=1e-5)
    for f in ("rot", "tilt", "psi", "origin_x", "origin_y"):
        np.testing.assert_allclose(getattr(back, f), getattr(ps, f), atol=1e-5)
    np.testing.assert_array_equal(back.half, ps.half)
    assert list(back.micrograph) == list(ps.micrograph)
    assert back.source_star == str(star)

    # paths below the STAR directory are relative, others absolute; emtable reads both blocks
    optics = Table(fileName=str(star), tableName="optics")
    parts = Table(fileName=str(star), tableName="particles")
    assert len(optics) == 2 and len(parts) == len(ps)
    assert {r.rlnImageDimensionality for r in optics} == {2}
    names = [r.rlnImageName for r in parts]
    assert names[-1] == "000001@Particles/a.mrcs"
    assert names[0].split("@")[1] == str(ps.stack_paths[0]) and os.path.isabs(names[0].split("@")[1])
    assert list(back.image_names) == names

    # pixels: random subset in random order
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(ps))[:9]
    got = back.read_images(idx)
    assert got.dtype == np.float32 and got.shape == (9, ps.box, ps.box)
    for j, i in enumerate(idx):
        np.testing.assert_array_equal(got[j], imgs[ps.stack_paths[i]][ps.stack_index[i]])
    back.check_finite(chunk=4)
    # the file source and the in-memory one (tests, benchmarks) give the job the same interface
    mem = ArrayParticles(got, back.ctf.subset(idx), back.apix)
    for src in (back, mem):
        assert isinstance(src, io.ParticleSource), type(src)
    np.testing.assert_array_equal(mem.read_images([3, 1]), got[[3, 1]])


def test_subset_with_poses_pickle(two_stacks):
    ps, imgs, _ = two_stacks
    mask = np.arange(len(ps)) % 2 == 0
    sub = ps.subset(mask)
    assert len(sub) == mask.sum() and len(sub.ctf) == len(sub)
    np.testing.assert_array_equal(sub.rot, ps.rot[mask])
    sub2 = ps.subset([3, 0])
    np.testing.assert_array_equal(sub2.read_images([1])[0], imgs[ps.stack_paths[0]][ps.stack_index[0]])
    z = np.zeros(len(ps))
    moved = ps.with_poses(z, z + 1, z + 2, z + 3, z + 4)
    np.testing.assert_array_equal(moved.half, ps.half)
    assert moved.tilt[0] == 1 and ps.tilt[0] != 1
    moved = ps.with_poses(z, z, z, z, z, half=np.ones(len(ps)))
    assert set(moved.half) == {1}
    clone = pickle.loads(pickle.dumps(ps))
    np.testing.assert_array_equal(clone.read_images([2]), ps.read_images([2]))


def test_read_relion30(tmp_path):
    imgs = _stack(str(tmp_path / "stack.mrcs"), 4, 12, 2.0)
    cols = _cols30(4, rlnAngleRot=[1.5, 2, 3, 4], rlnAngleTilt=[10, 20, 30, 40], rlnAnglePsi=[-5, 6, 7, 8],
                   rlnOriginX=[1, -2, 0.5, 0], rlnOriginY=[0, 3, 0, -1], rlnRandomSubset=[1, 2, 2, 1],
                   rlnPhaseShift=[0, 0, 45, 0])
    del cols["rlnImagePixelSize"]
    cols["rlnDetectorPixelSize"] = [5.0] * 4
    cols["rlnMagnification"] = [25000] * 4
    ps = io.read_star(_write30(tmp_path / "p30.star", cols))
    assert ps.apix == pytest.approx(2.0) and ps.box == 12 and len(ps) == 4
    np.testing.assert_allclose(ps.ctf.defocus_u, [10000, 10000.5, 10001, 10001.5])
    np.testing.assert_allclose(ps.ctf.voltage, 300)
    np.testing.assert_allclose(ps.ctf.phase_shift, [0, 0, 45, 0])
    np.testing.assert_allclose(ps.origin_x, [2, -4, 1, 0])  # pixels -> A
    np.testing.assert_allclose(ps.origin_y, [0, 6, 0, -2])
    np.testing.assert_allclose(ps.rot, [1.5, 2, 3, 4])
    np.testing.assert_array_equal(ps.half, [1, 2, 2, 1])
    assert ps.micrograph is None
    np.testing.assert_array_equal(ps.read_images([3, 1]), imgs[[3, 1]])

    # data_images block name, stack path relative to the current directory, rlnImagePixelSize
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "p.star").write_text(_star_text([("images", _cols30(2, stack="stack.mrcs"))]))
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        ps2 = io.read_star(sub / "p.star")
    finally:
        os.chdir(cwd)
    assert ps2.stack_paths[0] == str(tmp_path / "stack.mrcs") and ps2.rot is None and ps2.half is None


def test_missing_star(tmp_path):
    with pytest.raises(ParticleInputError, match="nothere.star"):
        io.read_star(tmp_path / "nothere.star")


def test_missing_stack(tmp_path):
    star = _write30(tmp_path / "p.star", _cols30(2, stack="Extract/missing.mrcs"))
    with pytest.raises(ParticleInputError) as e:
        io.read_star(star)
    for part in ("p.star", "row 1", str(tmp_path / "Extract" / "missing.mrcs")):
        assert part in str(e.value)


@pytest.mark.parametrize("col", ["rlnDefocusU", "rlnVoltage", "rlnAmplitudeContrast"])
def test_missing_ctf_column(tmp_path, col):
    _stack(str(tmp_path / "stack.mrcs"), 2, 12, 2.0)
    cols = _cols30(2)
    del cols[col]
    with pytest.raises(ParticleInputError, match=rf"(?s)p\.star.*{col}") as e:
        io.read_star(_write30(tmp_path / "p.star", cols))
    if col == "rlnDefocusU":
        assert "CTF" in str(e.value)


def test_stack_index_out_of_range(tmp_path):
    _stack(str(tmp_path / "stack.mrcs"), 3, 12, 2.0)
    cols = _cols30(4)
    with pytest.raises(ParticleInputError, match=r"(?s)row 4.*000004@stack\.mrcs.*stack\.mrcs.*3 image"):
        io.read_star(_write30(tmp_path / "p.star", cols))


def test_mixed_box_sizes(tmp_path):
    _stack(str(tmp_path / "a.mrcs"), 2, 12, 2.0)
    _stack(str(tmp_path / "b.mrcs"), 2, 14, 2.0)
    cols = _cols30(2)
    cols["rlnImageName"] = ["000001@a.mrcs", "000001@b.mrcs"]
    with pytest.raises(ParticleInputError, match=r"(?s)a\.mrcs.*12.*b\.mrcs.*14"):
        io.read_star(_write30(tmp_path / "p.star", cols))


def test_non_square(tmp_path):
    io.write_stack(tmp_path / "stack.mrcs", np.zeros((2, 12, 14), np.float32), 2.0)
    with pytest.raises(ParticleInputError, match=r"(?s)stack\.mrcs.*square"):
        io.read_star(_write30(tmp_path / "p.star", _cols30(2)))


def test_pixel_size_disagreement(tmp_path):
    _stack(str(tmp_path / "stack.mrcs"), 2, 12, 2.5)
    with pytest.raises(ParticleInputError, match=r"(?s)p\.star.* 2 A/px.*stack\.mrcs.*2\.5 A/px"):
        io.read_star(_write30(tmp_path / "p.star", _cols30(2)))
    # header voxel size 1.0 means "unset": accepted, and STAR value wins
    _stack(str(tmp_path / "stack.mrcs"), 2, 12, 1.0)
    assert io.read_star(tmp_path / "p.star").apix == 2.0


def test_empty_particle_table(tmp_path):
    cols = {k: [] for k in _cols30(0)}
    with pytest.raises(ParticleInputError, match=r"(?s)p\.star.*no particles"):
        io.read_star(_write30(tmp_path / "p.star", cols))


@pytest.mark.filterwarnings("ignore:Data array contains NaN values")  # the NaN is the test's input
def test_non_finite_pixel(tmp_path):
    imgs = np.random.default_rng(0).normal(size=(5, 12, 12)).astype(np.float32)
    imgs[3, 4, 5] = np.nan
    io.write_stack(tmp_path / "stack.mrcs", imgs, 2.0)
    ps = io.read_star(_write30(tmp_path / "p.star", _cols30(5)))
    with pytest.raises(ParticleInputError, match=r"(?s)row 4.*000004@stack\.mrcs"):
        ps.check_finite(chunk=2)


def test_mrc_map_roundtrip(tmp_path):
    vol = np.random.default_rng(1).normal(size=(8, 10, 12)).astype(np.float64)
    p = tmp_path / "map.mrc"
    io.write_mrc(p, vol, 1.37)
    io.write_mrc(p, vol, 1.37)  # overwrite
    data, apix = io.read_mrc(p)
    assert data.dtype == np.float32 and data.flags.writeable
    np.testing.assert_allclose(data, vol.astype(np.float32))
    assert apix == pytest.approx(1.37, rel=1e-6)
    with pytest.raises(ParticleInputError, match="nomap.mrc"):
        io.read_mrc(tmp_path / "nomap.mrc")


def test_open_stack_single_image(tmp_path):
    img = np.arange(12 * 12, dtype=np.float32).reshape(12, 12)
    io.write_mrc(tmp_path / "one.mrc", img, 2.0)
    st = io.open_stack(tmp_path / "one.mrc")
    assert st.shape == (1, 12, 12)
    np.testing.assert_array_equal(st[0], img)
    # a particle given as a plain file name (no N@) refers to that single image
    ps = io.read_star(_write30(tmp_path / "p.star", _cols30(1, rlnImageName=["one.mrc"])))
    assert ps.stack_index[0] == 0 and ps.box == 12
    np.testing.assert_array_equal(ps.read_images([0])[0], img)


def test_reading_100k_images_keeps_memory_bounded(tmp_path):
    """The input scan and random minibatches over a 100k-image memory-mapped stack (230 MB) leave the
    process's resident memory bounded (read pages are released once copied: io.release_pages)."""
    import mrcfile

    from scipion_abinitrefine.engine import simulate

    n, D = 100_000, 24
    path = str(tmp_path / "big.mrcs")
    with mrcfile.new_mmap(path, shape=(n, D, D), mrc_mode=2, overwrite=True) as m:
        for s in range(0, n, 10_000):
            m.data[s:s + 10_000] = np.random.default_rng(s).normal(size=(10_000, D, D)).astype(np.float32)
    ps = io.ParticleSet(image_names=np.array([f"{i + 1:06d}@big.mrcs" for i in range(n)]),
                        stack_paths=np.array([path] * n), stack_index=np.arange(n), apix=2.0, box=D,
                        ctf=simulate.random_ctf(n, np.random.default_rng(0)))

    def rss_mb():
        return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    # one-time costs first (the stack's index, a scan chunk's buffers: ~20 MB; more in a process that has run
    # other tests, whose freed heap threads.keep_heap keeps), so that what is measured is the scan
    ps.read_images(np.arange(4096))
    r0 = rss_mb()
    assert len(ps.check_finite()) == 0
    rng = np.random.default_rng(1)
    for _ in range(100):
        idx = rng.choice(n, 300, replace=False)
        got = ps.read_images(idx)
    assert rss_mb() - r0 < 64, rss_mb() - r0  # the stack itself is 230 MB
    with mrcfile.mmap(path, mode="r") as m:  # and what was read is the file's content
        np.testing.assert_array_equal(got, m.data[idx])
