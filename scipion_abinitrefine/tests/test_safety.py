"""Nothing lost: bad parameters and inputs refused before compute, the output directory checked, locked and
written atomically, SIGINT/SIGTERM ending in a checkpoint that ``--continue`` resumes to the uninterrupted
result. Every user error is one ``error:`` line and a non-zero exit code, never a traceback.
"""
import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import mrcfile
import numpy as np
import pytest

from scipion_abinitrefine import cli
from scipion_abinitrefine.engine import io, outdir
from scipion_abinitrefine.tests.test_job import CLI_TINY, simulate

CLI = [sys.executable, "-m", "scipion_abinitrefine.cli"]
TINY = CLI_TINY + ["--threads", "1"]


def checksums(folder):
    return {f: hashlib.sha256((folder / f).read_bytes()).hexdigest() for f in sorted(os.listdir(folder))
            if (folder / f).is_file()}


def run_cli(argv, capsys):
    """``abinitrefine ARGV`` in this process: (exit code, stderr).

    ``--threads`` sets the thread counts (numba, FFT, BLAS) for the whole process: it is restored, so the tests after
    these run with the pool they would have alone (a job's floating-point sums depend on it).
    """
    from scipion_abinitrefine.engine import threads as engine_threads

    threads = engine_threads.current()
    try:
        rc = cli.main([str(a) for a in argv])
    except SystemExit as e:  # argparse and the early checks exit with their message
        rc = e.code if isinstance(e.code, int) else 2
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
    finally:
        engine_threads.limit(threads["numba"])
    return rc, capsys.readouterr().err


def assert_user_error(rc, err, *words):
    assert rc not in (0, None), err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("error:") or "error:" in lines[-1], err
    for w in words:
        assert w in err, (w, err)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("safety")
    star = simulate(d / "data", n=240)
    few = simulate(d / "few", n=30)
    zeros = simulate(d / "zeros", n=240)
    with mrcfile.open(d / "zeros" / "particles.mrcs", "r+") as m:
        m.data[:] = 0
    other = simulate(d / "other", n=250, seed=4)
    return dict(star=star, few=few, zeros=zeros, other=other, root=d)


# ------------------------------------------------------------------------------------------------------
# parameters and inputs: refused before compute, nothing written
# ------------------------------------------------------------------------------------------------------

BAD_RUNS = [
    (["--init-minibatch", "0"], ["--init-minibatch", ">= 1"]),
    (["--init-minibatch", "-5"], ["--init-minibatch"]),
    (["--final-minibatch", "-5"], ["--final-minibatch"]),
    (["--fourier-radius-step", "0"], ["--fourier-radius-step"]),
    (["--fourier-radius-step", "-1"], ["--fourier-radius-step"]),
    (["--top-k", "0"], ["--top-k"]),
    (["--seed", "-1"], ["--seed"]),
    (["--threads", "-1"], ["--threads"]),
    (["--target-ess", "2"], ["--target-ess"]),
    (["--init-lr", "0"], ["--init-lr"]),
    (["--align-every", "-1"], ["--align-every"]),
    (["--max-res", "7"], ["Nyquist"]),
    (["--init-res", "10", "--max-res", "12"], ["Initial resolution"]),
    (["--backend", "tpu"], ["--backend"]),
    (["--sym", "Q5"], ["--sym", "unknown symmetry", "C1"]),
    # values no run can use: refused from the data and the machine's memory before anything is allocated
    (["--init-minibatch", "1000000000000"], ["--init-minibatch", "per half-set"]),
    (["--starts", "1000000000"], ["--starts", "GiB"]),
    (["--pose-samples", "1000000000"], ["--pose-samples", "GiB"]),
    (["--top-k", "1000000000"], ["--top-k", "GiB"]),
    (["--init-res", "1e9"], ["--init-res", "coarser than the box"]),
    (["--init-iters", "100000000000"], ["--init-iters", "at most"]),
    (["--mask-diameter", "0.5"], ["--mask-diameter", "pixels"]),
]


@pytest.mark.parametrize("extra,words", BAD_RUNS, ids=[" ".join(c[0]) for c in BAD_RUNS])
def test_bad_parameters_are_one_line_errors_before_compute(data, tmp_path, capsys, extra, words):
    out = tmp_path / "out"
    rc, err = run_cli(["run", "--particles", data["star"], "--out", out] + TINY + extra, capsys)
    assert_user_error(rc, err, *words)
    assert not out.exists()


@pytest.mark.parametrize("which,words", [("few", ["per half", "add particles"]),
                                         ("zeros", ["constant", "particles.mrcs"])])
def test_degenerate_data_is_refused(data, tmp_path, capsys, which, words):
    out = tmp_path / "out"
    rc, err = run_cli(["run", "--particles", data[which], "--out", out] + TINY, capsys)
    assert_user_error(rc, err, *words)
    assert not out.exists()


def test_output_directory_that_cannot_be_created(data, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    rc, err = run_cli(["run", "--particles", data["star"], "--out", blocker / "out"] + TINY, capsys)
    assert_user_error(rc, err, "cannot create the output directory", str(blocker / "out"))
    assert blocker.read_text() == "not a directory"


def test_not_enough_space_is_found_before_compute(data, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(outdir, "_free_bytes", lambda path: 1_000_000)
    rc, err = run_cli(["run", "--particles", data["star"], "--out", tmp_path / "out"] + TINY, capsys)
    assert_user_error(rc, err, "MiB free", "free space")
    assert not (tmp_path / "out" / "checkpoint.npz").exists()


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "map.mrc"
    io.write_mrc(target, np.ones((4, 4, 4)), 1.0)
    before = target.read_bytes()

    def full_disk(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(outdir.OutputError, match="no space left.*free space"):
        with outdir.atomic(str(target)) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"partial")
            full_disk()
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["map.mrc"]  # the temporary file is gone


def test_full_small_filesystem(data, tmp_path, capsys):
    """On a real 2 MiB filesystem the job is refused before compute (needs root and tmpfs)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({r.stderr.strip() or r.returncode}): the space check is "
                    "covered by test_not_enough_space_is_found_before_compute")
    try:
        rc, err = run_cli(["run", "--particles", data["star"], "--out", mnt / "out"] + TINY, capsys)
        assert_user_error(rc, err, "MiB free")
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_fsc_command_validates_its_maps(tmp_path, capsys):
    a = tmp_path / "a.mrc"
    b = tmp_path / "b.mrc"
    rng = np.random.default_rng(0)
    io.write_mrc(a, rng.normal(size=(16, 16, 16)), 2.0)
    io.write_mrc(b, rng.normal(size=(16, 16, 16)), 2.5)
    img = tmp_path / "img.mrc"
    io.write_mrc(img, rng.normal(size=(16, 16)), 2.0)
    nopix = tmp_path / "nopix.mrc"
    with mrcfile.new(nopix) as m:
        m.set_data(rng.normal(size=(16, 16, 16)).astype(np.float32))
    text = tmp_path / "text.mrc"
    text.write_text("hello")
    cases = [([a, a, "--apix", "-1"], ["--apix"]), ([a, img], ["cubic 3D map", str(img)]),
             ([a, tmp_path / "missing.mrc"], ["no such file"]), ([a, text], ["not a readable MRC", str(text)]),
             ([a, b], ["pixel sizes differ", "--apix"]), ([nopix, nopix], ["no pixel size", "--apix"])]
    for argv, words in cases:
        rc, err = run_cli(["fsc"] + argv, capsys)
        assert_user_error(rc, err, *words)
    nan = tmp_path / "nan.mrc"
    v = rng.normal(size=(16, 16, 16))
    v[3, 4, 5] = np.nan
    io.write_mrc(nan, v, 2.0)
    zero = tmp_path / "zero.mrc"
    io.write_mrc(zero, np.zeros((16, 16, 16)), 2.0)
    cases += [([a, nan], ["NaN", str(nan)]), ([zero, a], ["constant", str(zero)])]
    for argv, words in cases[-2:]:
        rc, err = run_cli(["fsc"] + argv, capsys)
        assert_user_error(rc, err, *words)
    rc, err = run_cli(["fsc", a, b, "--apix", "2"], capsys)
    assert rc == 0, err


@pytest.mark.parametrize("extra,words", [(["--box", "0"], ["--box"]), (["--map", "missing.mrc"], ["--map", "no such"]),
                                         (["--n", "0"], ["--n"]), (["--apix", "0"], ["--apix"]),
                                         (["--snr", "-1"], ["--snr"])])
def test_simulate_checks_its_arguments(tmp_path, capsys, extra, words):
    out = tmp_path / "sim"
    rc, err = run_cli(["simulate", "--out", out] + extra, capsys)
    assert_user_error(rc, err, *words)
    assert not out.exists()


def test_the_input_is_never_overwritten(data, tmp_path, capsys):
    """An --out that holds the input STAR (or its stacks) is refused, with --overwrite too: the job's own
    particles.star would replace the user's."""
    d = tmp_path / "d"
    shutil.copytree(os.path.dirname(data["star"]), d)
    before = checksums(d)
    for extra in ([], ["--overwrite"]):
        rc, err = run_cli(["run", "--particles", d / "particles.star", "--out", d] + TINY + extra, capsys)
        assert_user_error(rc, err, "holds the job's input", "particles.star")
        assert checksums(d) == before


def test_legal_but_surely_unintended_settings_are_warned(data, capsys):
    """Warned before the compute (the job logs them): more particles asked for than exist, no annealing,
    negative defocus, more threads than CPUs."""
    from scipion_abinitrefine.engine import inputs, params

    ps = io.read_star(data["star"])
    w = params.data_warnings(params.JobParams(num_particles=5000, target_ess_fraction=0.0), ps.box, ps.apix, len(ps))
    assert any("num_particles" in x and "5000" in x for x in w) and any("no annealing" in x for x in w), w
    assert params.data_warnings(params.JobParams(), ps.box, ps.apix, len(ps)) == []
    assert any("days" in x for x in params.data_warnings(params.JobParams(init_iters=20000), ps.box, ps.apix, len(ps)))
    assert inputs.ctf_warnings(ps) == []
    ps.ctf.defocus_u[7] = -20000.0
    (msg,) = inputs.ctf_warnings(ps)
    assert "negative defocus" in msg and "row 8" in msg, msg
    from scipion_abinitrefine.engine import threads as engine_threads

    cpus = len(os.sched_getaffinity(0))

    before = engine_threads.current()
    try:
        cli._setup_compute(cli.build_parser().parse_args(["fsc", "a", "b"]))  # no --threads: nothing said
        args = cli.build_parser().parse_args(["demo", "--threads", "100000"])
        cli._setup_compute(args)
    finally:
        engine_threads.limit(before["numba"])
    err = capsys.readouterr().err
    assert f"using {cpus}" in err and "100000" in err, err


# ------------------------------------------------------------------------------------------------------
# a running job: lock, signals, continue
# ------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def reference(data):
    """An uninterrupted job; while it runs, a second job in its directory is refused. It keeps its checkpoint
    (--keep-checkpoint) for the continuation tests below."""
    out = data["root"] / "ref"
    cmd = CLI + ["run", "--particles", data["star"], "--out", str(out), "--keep-checkpoint"] + TINY
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not (out / outdir.LOCK).exists() and time.time() - t0 < 120 and first.poll() is None:
        time.sleep(0.1)
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    # --overwrite while it runs: refused as well, and nothing of the running job's is removed
    third = subprocess.run(cmd + ["--overwrite"], capture_output=True, text=True, timeout=120)
    running = first.poll() is None
    so, se = first.communicate(timeout=600)
    assert first.returncode == 0, so + se
    return dict(out=out, cmd=cmd, second=second, third=third, running=running, first_out=so)


def test_two_jobs_in_one_directory(reference):
    second = reference["second"]
    assert_user_error(second.returncode, second.stderr, "another job (pid")
    # refused as running whether or not the first job has written its checkpoint yet; with --overwrite too
    assert "--continue" not in second.stderr, second.stderr
    assert reference["running"], "the first job ended before the second and third were refused: a longer job"
    assert_user_error(reference["third"].returncode, reference["third"].stderr, "another job (pid")
    assert "removed the previous job's outputs" not in reference["third"].stdout + reference["third"].stderr
    res = json.load(open(reference["out"] / "result.json"))  # the first job's complete set
    assert res["n_used"] > 0 and not (reference["out"] / outdir.LOCK).exists()
    assert (reference["out"] / outdir.CHECKPOINT).exists()  # kept when asked


def test_rerun_in_a_finished_directory_is_refused_unless_overwrite(reference, data, tmp_path, capsys):
    out = tmp_path / "done"
    shutil.copytree(reference["out"], out)
    os.remove(out / "checkpoint.npz")
    before = checksums(out)
    rc, err = run_cli(["run", "--particles", data["star"], "--out", out] + TINY, capsys)
    assert_user_error(rc, err, "another job's outputs", "--overwrite")
    assert checksums(out) == before
    messages = []
    outdir.previous_outputs(str(out), overwrite=True, say=messages.append)
    assert not any(os.path.exists(out / f) for f in outdir.OUTPUTS) and messages


def test_continue_checks_the_particles_and_accepts_harmless_changes(reference, data, tmp_path, capsys):
    out = tmp_path / "cont"
    shutil.copytree(reference["out"], out)
    before = checksums(out)
    rc, err = run_cli(["run", "--particles", data["other"], "--out", out, "--continue"] + TINY, capsys)
    assert_user_error(rc, err, "other data")
    # the same STAR rows over a re-simulated stack, and the same images with the defocus shifted: other data
    resim = tmp_path / "resim"
    simulate(resim, n=240, seed=8)
    shutil.copy(data["star"], resim / "particles.star")  # the reference's rows, this stack's pixels
    shifted = tmp_path / "shifted"
    shutil.copytree(os.path.dirname(data["star"]), shifted)
    ps = io.read_star(str(shifted / "particles.star"))
    ps.ctf.defocus_u[:] += 5000.0
    ps.ctf.defocus_v[:] += 5000.0
    io.write_star(str(shifted / "particles.star"), ps)
    for star in (resim / "particles.star", shifted / "particles.star"):
        rc, err = run_cli(["run", "--particles", star, "--out", out, "--continue"] + TINY, capsys)
        assert_user_error(rc, err, "other data")
    rc, err = run_cli(["run", "--particles", data["star"], "--out", out, "--continue"] + TINY + ["--seed", "9"],
                      capsys)
    assert_user_error(rc, err, "different parameters", "seed")
    assert checksums(out) == before
    # backend and checkpoint interval do not change results, nor do the data's paths (the same files copied
    # elsewhere): accepted, and the result is the same (in a fresh process, as the reference ran: the same
    # thread pools give the same floating-point sums)
    moved = tmp_path / "moved"
    shutil.copytree(os.path.dirname(data["star"]), moved)
    done = subprocess.run(CLI + ["run", "--particles", str(moved / "particles.star"), "--out", str(out), "--continue"]
                          + TINY + ["--backend", "auto", "--checkpoint-minutes", "1"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "backend cpu -> auto" in done.stdout, done.stdout
    assert json.load(open(out / "result.json"))["resolution_A"] == \
        json.load(open(reference["out"] / "result.json"))["resolution_A"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_writes_a_checkpoint_and_continue_reproduces_the_result(reference, data, tmp_path, sig):
    out = tmp_path / "sig"
    cmd = CLI + ["run", "--particles", data["star"], "--out", str(out)] + TINY
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    for line in p.stdout:  # the progress line every 10 iterations
        if line.startswith("iter") and int(line.split()[1].split("/")[0]) >= 10:
            break
    p.send_signal(sig)
    so, se = p.communicate(timeout=300)
    assert p.returncode == 128 + sig, (p.returncode, se)
    assert f"interrupted by {signal.Signals(sig).name}" in se and "--continue" in se and "Traceback" not in se
    assert not (out / "result.json").exists() and not (out / outdir.LOCK).exists()
    with np.load(out / "checkpoint.npz") as z:
        assert int(z["A__iteration"]) >= 10
    if sig == signal.SIGINT:
        return  # the same checkpoint path as SIGTERM: one continuation is checked (below), to keep CI short
    done = subprocess.run(cmd + ["--continue"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    ref = reference["out"]
    for m in ("half_map_A.mrc", "half_map_B.mrc"):
        assert np.array_equal(io.read_mrc(out / m)[0], io.read_mrc(ref / m)[0]), m
    a, b = io.read_star(str(out / "particles.star")), io.read_star(str(ref / "particles.star"))
    assert np.array_equal(a.rot, b.rot) and np.array_equal(a.half, b.half)
    # `abinitrefine fsc` on the half-maps gives the job's own number
    fsc = subprocess.run(CLI + ["fsc", str(out / "half_map_A.mrc"), str(out / "half_map_B.mrc")],
                         capture_output=True, text=True)
    assert f"{json.load(open(out / 'result.json'))['resolution_A']:.2f} A" in fsc.stdout, fsc.stdout


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_damaged_checkpoint_is_a_clear_error(reference, data, tmp_path, capsys, damage):
    out = tmp_path / "damaged"
    shutil.copytree(reference["out"], out)
    ck = out / "checkpoint.npz"
    raw = ck.read_bytes()
    ck.write_bytes(raw[:len(raw) // 2] if damage == "truncated" else b"not a checkpoint" * 100)
    rc, err = run_cli(["run", "--particles", data["star"], "--out", out, "--continue"] + TINY, capsys)
    assert_user_error(rc, err, "checkpoint", "damaged", "without --continue")


def test_a_signal_in_the_final_pass_stops_within_seconds(reference, data, tmp_path):
    """SIGTERM while the final stage runs (continued from the stage-"final" checkpoint that --keep-checkpoint
    kept): exit 143 within a few seconds, no output of the stage left beside the checkpoint, and --continue
    then gives the uninterrupted result."""
    out = tmp_path / "final"
    shutil.copytree(reference["out"], out)
    for f in outdir.OUTPUTS:
        (out / f).unlink(missing_ok=True)
    cmd = CLI + ["run", "--particles", data["star"], "--out", str(out), "--continue"] + TINY
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    for line in p.stdout:
        if line.startswith("final pass:"):
            break
    t0 = time.time()
    p.send_signal(signal.SIGTERM)
    so, se = p.communicate(timeout=120)
    waited = time.time() - t0
    assert p.returncode == 143, (p.returncode, so, se)
    assert waited < 5, waited
    assert "interrupted by SIGTERM" in se and "Traceback" not in se, se
    left = [f for f in outdir.OUTPUTS if (out / f).exists()]
    assert left == [] and (out / outdir.CHECKPOINT).exists(), left
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    for m in ("half_map_A.mrc", "half_map_B.mrc"):
        assert np.array_equal(io.read_mrc(out / m)[0], io.read_mrc(reference["out"] / m)[0]), m


def test_the_unmoved_score_is_logged_whichever_hand_is_chosen(monkeypatch):
    """The alignment log line's "unmoved" NCC is a number also when the other hand's candidate is applied
    (it was nan there: only the best candidate carried it)."""
    from scipion_abinitrefine.engine import halves, simulate
    from scipion_abinitrefine.engine.sgd import SGDParams, SGDRun
    from scipion_abinitrefine.testing.sources import ArrayParticles

    vol = simulate.make_phantom(32, 4.0, seed=1)
    images, truth = simulate.simulate_particles(vol, 40, 4.0, snr=1.0, seed=0)
    src = ArrayParticles(images, truth["ctf"], 4.0)
    p = SGDParams(max_res_A=12.0, init_res_A=30.0)
    A, B = (SGDRun(src, np.arange(40), p, rng_seed=s) for s in (1, 2))
    for run in (A, B):
        run.iteration = run.n_iters  # at the maximum resolution: the band past 20 A decides between candidates
        run.set_working_radius(run.r_max)
        run.set_model_volume(vol)
    B.set_model_volume(vol[::-1].copy())  # the mirror: both hands are candidates
    monkeypatch.setattr(halves, "choose_alignment", lambda cands, margin=0: len(cands) - 1)
    rec, msg = halves.align_halves(A, B, 32, 4.0, 20.0, 0)
    assert rec["chosen"] == "other hand" and np.isfinite(rec["identity_score"]), rec
    assert "nan" not in msg, msg
