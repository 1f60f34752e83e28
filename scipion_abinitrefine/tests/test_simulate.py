"""The simulator makes what it says: B-factor envelope, coloured noise, amplitude scale, junk, shapes."""
import numpy as np
import pytest

from scipion_abinitrefine.engine import fourier, simulate

BOX, APIX = 32, 4.0


@pytest.fixture(scope="module")
def vol():
    return simulate.make_phantom(BOX, APIX)


def _radial_power(images):
    P = (np.abs(fourier.ft2c(images)) ** 2).mean(axis=0)
    sh = np.rint(fourier.radial_index(P.shape)).astype(int)
    return np.bincount(sh.ravel(), P.ravel()) / np.bincount(sh.ravel())


def test_defaults_are_the_old_data_set(vol):
    """New options draw from their own stream: the default data set (tests, benchmarks) is unchanged."""
    a, ta = simulate.simulate_particles(vol, 20, APIX, snr=0.1, seed=5)
    b, tb = simulate.simulate_particles(vol, 20, APIX, snr=0.1, seed=5, scale_spread=0.0, junk_fraction=0.0)
    assert np.array_equal(a, b) and not ta["junk"].any() and np.all(ta["scale"] == 1)


def test_bfactor_envelope(vol):
    """Noise-free projections with B = 200 A^2 have exp(-B k^2 / 2) of the power at frequency k."""
    a, _ = simulate.simulate_particles(vol, 200, APIX, snr=1e9, seed=1)
    b, _ = simulate.simulate_particles(vol, 200, APIX, snr=1e9, seed=1, bfactor=200.0)
    pa, pb = _radial_power(a), _radial_power(b)
    for s in (4, 8, 12):
        k = s / (BOX * APIX)
        assert pb[s] / pa[s] == pytest.approx(np.exp(-200.0 * k**2 / 2), rel=0.05), s


def test_coloured_noise_spectrum(vol):
    """Pure noise (SNR tiny) follows noise_psd: more power at low than at high frequency; white is flat."""
    psd = simulate.noise_psd(BOX, APIX, "coloured")
    assert psd.mean() == pytest.approx(1.0)
    for colour in ("white", "coloured"):
        img, t = simulate.simulate_particles(vol, 400, APIX, snr=1e-6, seed=2, noise=colour)
        p = _radial_power(img) / (t["noise_sigma"] ** 2 * BOX**2)
        sh = np.rint(fourier.radial_index((BOX, BOX))).astype(int)
        want = np.bincount(sh.ravel(), simulate.noise_psd(BOX, APIX, colour).ravel()) / np.bincount(sh.ravel())
        np.testing.assert_allclose(p[2:15], want[2:15], rtol=0.15)
        assert np.var(img) == pytest.approx(t["noise_sigma"] ** 2, rel=0.05)
    assert want[1] / want[15] > 2.5  # ice/detector: falls towards high frequency


def test_junk_is_marked_and_is_junk(vol):
    n = 400
    img, t = simulate.simulate_particles(vol, n, APIX, snr=1e9, seed=4, junk_fraction=0.2, scale_spread=0.2)
    assert t["junk"].sum() == 80
    kinds = t["junk_kind"]
    assert set(kinds[t["junk"]]) == set(simulate.JUNK_KINDS) and set(kinds[~t["junk"]]) == {""}
    assert np.all((t["scale"] >= 0.8) & (t["scale"] <= 1.2)) and t["scale"].std() > 0.05
    power = (img**2).mean(axis=(1, 2))
    good = ~t["junk"]
    assert np.all(power[kinds == "empty"] < 1e-6 * np.median(power[good]))  # ice only (noise ~ 0 here)
    # the scale multiplies the signal: power grows with scale^2
    assert np.corrcoef(power[good], t["scale"][good] ** 2)[0, 1] > 0.5
    # off-centre particles: their centre of mass is far from the box centre, good ones are near it
    g = np.arange(BOX) - BOX // 2

    def com_dist(im):
        w = np.abs(im)
        return np.hypot((w.sum(0) * g).sum() / w.sum(), (w.sum(1) * g).sum() / w.sum())
    off = [com_dist(img[i]) for i in np.flatnonzero(kinds == "offcentre")]
    ok = [com_dist(img[i]) for i in np.flatnonzero(good)[:50]]
    assert np.median(off) > 2.5 * np.median(ok)
    # aggregates carry more than one particle's signal
    assert np.median(power[kinds == "aggregate"]) > 1.5 * np.median(power[good])


@pytest.mark.parametrize("shape", simulate.SHAPES)
def test_phantom_shapes(shape):
    """Each family has its aspect ratio; seeds give different structures; the demo map is fixed."""
    a = simulate.phantom_atoms(shape, 1, 77.0)
    ev = np.sqrt(np.sort(np.linalg.eigvalsh(np.cov(a.T))))  # principal extents, small to large
    if shape == "elongated":
        assert ev[2] / ev[1] > 1.8
    if shape == "flat":
        assert ev[1] / ev[0] > 1.5
    if shape == "compact":
        assert ev[2] / ev[0] < 2.0
    if shape != "demo":
        b = simulate.phantom_atoms(shape, 2, 77.0)
        assert len(a) != len(b) or not np.allclose(a, b)
    v = simulate.make_phantom(BOX, APIX, seed=1, shape=shape)
    assert v.shape == (BOX,) * 3 and v.max() > 0.5
    with pytest.raises(ValueError, match="shape"):
        simulate.make_phantom(BOX, APIX, shape="banana")


def test_mass_sets_the_size():
    small = simulate.phantom_atoms("compact", 3, mass_kda=50)
    big = simulate.phantom_atoms("compact", 3, mass_kda=400)
    assert len(big) / len(small) == pytest.approx(8.0, rel=0.15)  # atoms ~ mass


def test_cli_writes_the_junk_truth(tmp_path):
    from scipion_abinitrefine import cli
    from scipion_abinitrefine.engine import io

    assert cli.main(["simulate", "--out", str(tmp_path), "--n", "50", "--box", "32", "--apix", "4", "--junk", "0.2",
                     "--shape", "flat", "--bfactor", "80", "--noise", "coloured", "--scale-spread", "0.2",
                     "--defocus", "0.5", "3"]) == 0
    rows = np.genfromtxt(tmp_path / "truth.csv", delimiter=",", names=True, dtype=None, encoding=None)
    ps = io.read_star(str(tmp_path / "particles.star"))
    assert len(rows) == len(ps) == 50 and rows["junk"].sum() == 10
    assert set(rows["junk_kind"][rows["junk"] == 1]) <= set(simulate.JUNK_KINDS)
    d = 0.5 * (ps.ctf.defocus_u + ps.ctf.defocus_v)
    assert d.min() >= 0.45e4 and d.max() <= 3.05e4
    assert cli.main(["simulate", "--out", str(tmp_path / "x"), "--junk", "1.5"]) == 2


def _pdb_line(serial, name, resname, x, y, z, element, record="ATOM"):
    return (f"{record:<6s}{serial:5d} {name:<4s} {resname:3s} A{1:4d}    {x:8.3f}{y:8.3f}{z:8.3f}"
            f"{1.0:6.2f}{20.0:6.2f}          {element:>2s}\n")


def test_map_from_pdb_weights_and_centres_atoms(tmp_path):
    """An atomic model renders at its centre of mass, each atom weighted by its electrons; waters and later
    models are left out; a model too large for the box and a file without atoms are refused by name."""
    import gzip

    atoms = [("CA", "ALA", (-10.0, 0.0, 0.0), "C"), ("SD", "MET", (10.0, 0.0, 0.0), "S"),
             ("O", "HOH", (0.0, 20.0, 0.0), "O")]  # the water must not count
    text = "".join(_pdb_line(i + 1, n, r, *xyz, el, "HETATM" if r == "HOH" else "ATOM")
                   for i, (n, r, xyz, el) in enumerate(atoms))
    text += "ENDMDL\n" + _pdb_line(9, "CA", "ALA", 0.0, 0.0, 30.0, "C")  # model 2: ignored
    path = tmp_path / "m.pdb.gz"
    with gzip.open(path, "wt") as f:
        f.write(text)
    xyz, z = simulate.read_pdb_atoms(str(path))
    assert z.tolist() == [6, 16] and xyz[:, 0].tolist() == [-10.0, 10.0]
    vol = simulate.map_from_pdb(str(path), 32, 2.0).astype(np.float64)
    # centre of mass at (6 * -10 + 16 * 10) / 22 = +4.55 A: rendered at the box centre, so the carbon sits
    # 14.55 A to the left, the sulfur 5.45 A to the right, with 16/6 of the carbon's density
    c = 16
    line = vol[c, c, :]
    xs = (np.arange(32) - c) * 2.0
    left, right = line[xs < 0], line[xs >= 0]
    assert xs[xs < 0][np.argmax(left)] == pytest.approx(-14.55, abs=1.1)
    assert xs[xs >= 0][np.argmax(right)] == pytest.approx(5.45, abs=1.1)
    zz, yy, xx = np.indices(vol.shape)
    com = [(vol * g).sum() / vol.sum() for g in (xx, yy, zz)]
    assert np.allclose(com, c, atol=0.1)
    assert vol[:, :, c:].sum() / vol[:, :, :c].sum() == pytest.approx(16 / 6, rel=0.05)
    with pytest.raises(ValueError, match="m.pdb.gz.*--apix"):
        simulate.map_from_pdb(str(path), 8, 2.0)  # 29 A model in a 16 A box
    (tmp_path / "empty.pdb").write_text("REMARK nothing\n")
    with pytest.raises(ValueError, match="empty.pdb: no ATOM"):
        simulate.read_pdb_atoms(str(tmp_path / "empty.pdb"))
    from scipion_abinitrefine import cli
    from scipion_abinitrefine.engine import io

    assert cli.main(["simulate", "--out", str(tmp_path / "s"), "--n", "5", "--box", "32", "--apix", "2",
                     "--pdb", str(path)]) == 0
    truth, apix = io.read_mrc(str(tmp_path / "s" / "truth.mrc"))
    assert apix == 2.0 and np.allclose(truth, vol)
    with pytest.raises(SystemExit, match="--pdb: .*empty.pdb"):
        cli.main(["simulate", "--out", str(tmp_path / "t"), "--n", "5", "--pdb", str(tmp_path / "empty.pdb")])
