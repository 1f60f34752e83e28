"""Pose and particle conversion between the engine (RELION STAR) and Scipion.

* our pose <-> Scipion matrix helpers round-trip, and their rotation is RELION's Euler matrix;
* a STAR written by ``engine.io.write_star`` with known poses, imported by scipion-em-relion's
  ``ProtImportParticles`` (importFrom RELION) into a throwaway project, converts back through our helpers
  to the same angles and shifts (0.01 deg / 0.01 A), and our Transform equals the one scipion-em-relion built;
* the imported Scipion particles convert to the engine's STAR with the same images and CTF;
* particles stored in a format mrcfile cannot read (SPIDER .stk) are converted to an .mrcs with equal pixels.

Scipion runs in child processes (``scipion_env.run_child``) with a complete environment.
"""
import os

import numpy as np

from scipion_abinitrefine.convert import poses
from scipion_abinitrefine.engine import io, so3
from scipion_abinitrefine.engine.ctf import CTFParams
from scipion_abinitrefine.tests.scipion_env import run_child

HERE = "scipion_abinitrefine.tests.test_scipion_convert"
APIX = 2.5
BOX = 16
N = 12


def _random_poses(n, rng):
    rot = rng.uniform(-180, 180, n)
    tilt = rng.uniform(2, 178, n)
    psi = rng.uniform(-180, 180, n)
    ox = rng.uniform(-6, 6, n)
    oy = rng.uniform(-6, 6, n)
    rot[0] = 37.5  # scipion-em-relion decides "projection alignment" from a non-zero rot in the first row
    return rot, tilt, psi, ox, oy


def _make_star(folder, seed=7):
    """A tiny particle STAR with known poses and CTF; images are random (their content is checked, not used)."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    images = rng.normal(size=(N, BOX, BOX)).astype(np.float32)
    stack = os.path.join(folder, "particles.mrcs")
    io.write_stack(stack, images, APIX)
    rot, tilt, psi, ox, oy = _random_poses(N, rng)
    du = rng.uniform(8000, 25000, N)
    ctf = CTFParams(du, du - rng.uniform(0, 800, N), rng.uniform(0, 180, N), np.full(N, 300.0), np.full(N, 2.7),
                    np.full(N, 0.1), np.zeros(N))
    ps = io.ParticleSet(image_names=[f"{i + 1:06d}@particles.mrcs" for i in range(N)], stack_paths=[stack] * N,
                        stack_index=np.arange(N), apix=APIX, box=BOX, ctf=ctf, rot=rot, tilt=tilt, psi=psi,
                        origin_x=ox, origin_y=oy)
    star = os.path.join(folder, "particles.star")
    io.write_star(star, ps)
    return star, stack, images, ps


def _write_spider_stack(path, images):
    """Minimal SPIDER image stack (native float32), the format Xmipp extraction writes (.stk)."""
    n, ny, nx = images.shape
    lenbyt = nx * 4
    labrec = -(-1024 // lenbyt)
    labbyt = labrec * lenbyt

    def header(nz, istack, maxim, imgnum):
        h = np.zeros(labbyt // 4, np.float32)
        h[0], h[1], h[2], h[4] = nz, ny, ny + labrec, 1  # NZ, NY, IREC, IFORM (2D)
        h[11], h[12], h[21], h[22] = nx, labrec, labbyt, lenbyt  # NX, LABREC, LABBYT, LENBYT
        h[23], h[25], h[26] = istack, maxim, imgnum  # ISTACK, MAXIM, IMGNUM
        return h

    with open(path, "wb") as f:
        f.write(header(1, 2, n, 0).tobytes())
        for k in range(n):
            f.write(header(1, 0, 0, k + 1).tobytes())
            f.write(np.ascontiguousarray(images[k], dtype=np.float32).tobytes())


# ---------------------------------------------------------------------------------------------------------
# children (run with Scipion's environment)
# ---------------------------------------------------------------------------------------------------------

def _child_relion_import(star, out_star):
    from pwem.protocols import ProtImportParticles

    from scipion_abinitrefine.convert import particle_pose, pose_to_matrix, write_input_star
    from scipion_abinitrefine.tests.scipion_env import launch, new_project

    project = new_project("abinitrefine_convert", require_plugin=False)  # only scipion-em-relion runs here
    prot = project.newProtocol(ProtImportParticles, objLabel="import RELION star",
                               importFrom=ProtImportParticles.IMPORT_FROM_RELION, starFile=star,
                               samplingRate=APIX, voltage=300.0, sphericalAberration=2.7, amplitudeContrast=0.1,
                               magnification=50000)
    prot = launch(project, prot, timeout=120)
    parts = prot.outputParticles
    rows = []
    for p in parts.iterItems(orderBy="id"):
        index, fn = p.getLocation()
        pose = particle_pose(p, parts.getSamplingRate())
        ctf = p.getCTF()
        rows.append(dict(id=int(p.getObjId()), index=int(index), file=os.path.realpath(fn), pose=list(pose),
                         matrix=p.getTransform().getMatrix().tolist(),
                         own_matrix=pose_to_matrix(*pose, parts.getSamplingRate()).tolist(),
                         ctf=[ctf.getDefocusU(), ctf.getDefocusV(), ctf.getDefocusAngle()]))
    keys = write_input_star(parts, out_star, work_dir=os.path.dirname(out_star))
    return dict(alignment=str(parts.getAlignment()), sampling=parts.getSamplingRate(), size=parts.getSize(),
                rows=rows, keys=[[k[0], k[1], v] for k, v in keys.items()])


def _child_convert_spider(stk, sqlite, out_star, defocus):
    from pwem.objects import Acquisition, CTFModel, Particle, SetOfParticles

    from scipion_abinitrefine.convert import write_input_star

    parts = SetOfParticles(filename=sqlite)
    parts.setSamplingRate(APIX)
    acq = Acquisition(voltage=200.0, sphericalAberration=2.0, amplitudeContrast=0.07, magnification=50000)
    parts.setAcquisition(acq)
    parts.setHasCTF(True)
    for k, du in enumerate(defocus):
        p = Particle(location=(k + 1, stk))
        p.setObjId(k + 1)
        ctf = CTFModel(defocusU=du, defocusV=du - 100.0, defocusAngle=10.0 * k)
        ctf.standardize()
        p.setCTF(ctf)
        p.setAcquisition(acq.clone())
        parts.append(p)
    parts.setDim((BOX, BOX, 1))
    parts.write()
    keys = write_input_star(parts, out_star, work_dir=os.path.dirname(out_star))
    return dict(keys=[[k[0], k[1], v] for k, v in keys.items()])


# ---------------------------------------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------------------------------------

def test_pose_matrix_round_trip():
    rng = np.random.default_rng(1)
    rot, tilt, psi, ox, oy = _random_poses(500, rng)
    M = poses.pose_to_matrix(rot, tilt, psi, ox, oy, APIX)
    # Scipion keeps inv([[A, -s], [0, 1]]): its inverse holds RELION's Euler matrix and minus the shift (px)
    Minv = np.linalg.inv(M)
    assert np.allclose(Minv[:, :3, :3], so3.euler_to_matrix(rot, tilt, psi), atol=1e-12)
    assert np.allclose(-Minv[:, :2, 3] * APIX, np.stack([ox, oy], 1), atol=1e-9)
    r2, t2, p2, x2, y2 = poses.matrix_to_pose(M, APIX)
    assert np.abs(poses.angle_diff(r2, rot)).max() < 1e-6
    assert np.abs(t2 - tilt).max() < 1e-6
    assert np.abs(poses.angle_diff(p2, psi)).max() < 1e-6
    assert np.abs(x2 - ox).max() < 1e-9 and np.abs(y2 - oy).max() < 1e-9
    # one matrix at a time (what the protocol does per particle) gives the same
    m0 = poses.pose_to_matrix(rot[3], tilt[3], psi[3], ox[3], oy[3], APIX)
    assert m0.shape == (4, 4) and np.allclose(m0, M[3])
    # a different pose must not come back equal (the check above can fail)
    assert poses.rotation_distance_deg(rot[0], tilt[0], psi[0], rot[0] + 1.0, tilt[0], psi[0]) > 0.5


def test_relion_star_import_matches_engine_poses(tmp_path):
    star, stack, images, ps = _make_star(str(tmp_path / "data"))
    out_star = str(tmp_path / "back" / "input.star")
    os.makedirs(os.path.dirname(out_star))
    res = run_child(f"{HERE}:_child_relion_import", tmp_path / "scipion", dict(star=star, out_star=out_star),
                    timeout=150)
    assert res["alignment"] == "Projection" and res["size"] == N
    assert abs(res["sampling"] - APIX) < 1e-9
    real_stack = os.path.realpath(stack)
    for row in res["rows"]:
        k = row["index"] - 1
        # the imported image is the same image of the same stack (linked into the import folder)
        assert row["file"] == real_stack
        rot, tilt, psi, ox, oy = row["pose"]
        assert abs(poses.angle_diff(rot, ps.rot[k])) < 0.01, (row, ps.rot[k])
        assert abs(tilt - ps.tilt[k]) < 0.01
        assert abs(poses.angle_diff(psi, ps.psi[k])) < 0.01
        assert abs(ox - ps.origin_x[k]) < 0.01 and abs(oy - ps.origin_y[k]) < 0.01
        # our Transform for that pose is the matrix scipion-em-relion built
        assert np.allclose(row["own_matrix"], row["matrix"], atol=1e-5)
        assert np.allclose(row["ctf"], [ps.ctf.defocus_u[k], ps.ctf.defocus_v[k], ps.ctf.defocus_angle[k]],
                           atol=0.01)
    # Scipion particles -> engine STAR: same images, CTF and acquisition, keys name the particles
    back = io.read_star(out_star)
    assert len(back) == N and back.box == BOX and abs(back.apix - APIX) < 1e-6
    assert back.rot is None  # input poses are not passed to the ab-initio job
    order = back.stack_index
    assert np.array_equal(back.read_images(np.arange(N)), images[order])
    assert np.allclose(back.ctf.defocus_u, ps.ctf.defocus_u[order], atol=0.01)
    assert np.allclose(back.ctf.defocus_v, ps.ctf.defocus_v[order], atol=0.01)
    assert np.allclose(back.ctf.voltage, 300.0) and np.allclose(back.ctf.cs, 2.7) and np.allclose(back.ctf.q0, 0.1)
    ids = {row["index"]: row["id"] for row in res["rows"]}
    for path, index0, pid in res["keys"]:
        assert os.path.realpath(path) == real_stack and ids[index0 + 1] == pid


def test_non_mrc_particles_are_converted(tmp_path):
    rng = np.random.default_rng(3)
    images = rng.normal(size=(5, BOX, BOX)).astype(np.float32)
    stk = str(tmp_path / "particles.stk")
    _write_spider_stack(stk, images)
    out_star = str(tmp_path / "job" / "input.star")
    os.makedirs(os.path.dirname(out_star))
    defocus = rng.uniform(10000, 20000, 5).tolist()
    res = run_child(f"{HERE}:_child_convert_spider", tmp_path / "scipion",
                    dict(stk=stk, sqlite=str(tmp_path / "particles.sqlite"), out_star=out_star, defocus=defocus),
                    timeout=90)
    back = io.read_star(out_star)
    assert len(back) == 5
    converted = set(back.stack_paths)
    assert len(converted) == 1 and next(iter(converted)).endswith(".mrcs")
    assert os.path.dirname(next(iter(converted))) == os.path.dirname(out_star)
    assert np.allclose(back.read_images(np.arange(5)), images)
    assert np.allclose(back.ctf.defocus_u, defocus, atol=0.01)
    assert np.allclose(back.ctf.voltage, 200.0) and np.allclose(back.ctf.q0, 0.07)
    assert sorted(pid for _, _, pid in res["keys"]) == [1, 2, 3, 4, 5]
