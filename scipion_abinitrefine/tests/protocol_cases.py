"""The headless protocol case shared by the pytest suite (``test_scipion_protocol.py``) and the Scipion-style
suite (``test_scipion_suite.py``, what ``scipion3 tests`` runs): a tiny simulated data set (box 32, 200
particles, CTF) written as an MRC stack plus a SetOfParticles sqlite built in code, imported with
ProtImportParticles (importFrom Scipion) and refined with a few iterations; the outputs are read back from the
project database and checked against the job's own files.

Plain ``assert`` only (no pytest here): Scipion's test runner imports this module without pytest.
"""
import math
import os
import subprocess
import sys
import time

import numpy as np

from scipion_abinitrefine.convert import poses, stack_key
from scipion_abinitrefine.engine import io, names

PROJECT = "abinitrefine_protocol"
N, BOX, APIX, NUM_USE = 200, 32, 4.0, 180
TINY = dict(numParticles=NUM_USE, maxRes=12.0, initRes=35.0, alignRes=20.0, initIters=10, finalIters=5,
            radiusStep=0.3, initMinibatch=40, finalMinibatch=80, minibatchSwitch=10, lrDuration=8, alignEvery=10,
            seed=5, useGpu=False, numberOfThreads=1, numStarts=3,  # 3 starts: a halving and a choice, cheaply
            junkClasses=1)  # and a junk class: the unused particles carry their class


def simulate_data(data):
    """The tiny data set (particles.star + stack) in folder ``data``; returns the STAR and sqlite paths."""
    subprocess.run([sys.executable, "-m", "scipion_abinitrefine.cli", "simulate", "--out", str(data), "--n", str(N),
                    "--box", str(BOX), "--apix", str(APIX), "--snr", "0.1", "--seed", "3"], check=True,
                   capture_output=True, timeout=120)
    return os.path.join(str(data), "particles.star"), os.path.join(str(data), "particles.sqlite")


# ---------------------------------------------------------------------------------------------------------
# children
# ---------------------------------------------------------------------------------------------------------

def build_sqlite(star, sqlite):
    """SetOfParticles sqlite next to the stack (relative image names) from an engine STAR."""
    from pwem.objects import Acquisition, CTFModel, Particle, SetOfParticles

    ps = io.read_star(star)
    parts = SetOfParticles(filename=sqlite)
    parts.setSamplingRate(ps.apix)
    acq = Acquisition(voltage=float(ps.ctf.voltage[0]), sphericalAberration=float(ps.ctf.cs[0]),
                      amplitudeContrast=float(ps.ctf.q0[0]), magnification=50000)
    parts.setAcquisition(acq)
    parts.setHasCTF(True)
    folder = os.path.dirname(os.path.abspath(sqlite))
    for k in range(len(ps)):
        p = Particle(location=(int(ps.stack_index[k]) + 1, os.path.relpath(ps.stack_paths[k], folder)))
        p.setObjId(k + 1)
        p.setCTF(CTFModel(defocusU=float(ps.ctf.defocus_u[k]), defocusV=float(ps.ctf.defocus_v[k]),
                          defocusAngle=float(ps.ctf.defocus_angle[k])))
        p.setAcquisition(acq.clone())
        parts.append(p)
    parts.setDim((ps.box, ps.box, 1))
    parts.write()
    return ps


def child_run(star, sqlite, tiny):
    from pwem.protocols import ProtImportParticles

    from scipion_abinitrefine.protocols import ProtAbInitioRefine
    from scipion_abinitrefine.tests.scipion_env import launch, new_project

    ps = build_sqlite(star, sqlite)
    project = new_project(PROJECT)
    imp = project.newProtocol(ProtImportParticles, objLabel="import particles (sqlite)",
                              importFrom=ProtImportParticles.IMPORT_FROM_SCIPION, sqliteFile=sqlite,
                              samplingRate=ps.apix, voltage=float(ps.ctf.voltage[0]),
                              sphericalAberration=float(ps.ctf.cs[0]), amplitudeContrast=float(ps.ctf.q0[0]),
                              magnification=50000)
    imp = launch(project, imp, timeout=120)

    def new(**kw):
        prot = project.newProtocol(ProtAbInitioRefine, **kw)
        prot.inputParticles.set(imp)
        prot.inputParticles.setExtended("outputParticles")
        return prot

    errors = {
        "nyquist": new(**dict(tiny, maxRes=5.0)).validate(),
        "align": new(**dict(tiny, alignRes=10.0)).validate(),
        "minibatch": new(**dict(tiny, numParticles=0, initMinibatch=90, finalMinibatch=300)).validate(),
        "symmetry": new(**dict(tiny, symmetryGroup=0, symmetryOrder=0)).validate(),  # C0
        "lr": new(**dict(tiny, initLR=0.0)).validate(),
        "good": new(**tiny).validate(),
    }
    warnings = new(**tiny).warnings()
    sym_args = {str(g): new(**dict(tiny, symmetryGroup=g, symmetryOrder=7))._getJobArgs() for g in (1, 5)}
    prot = new(objLabel="ab-initio tiny", **tiny)
    prot = launch(project, prot, timeout=420)
    return dict(prot_id=int(prot.getObjId()), errors=errors, warnings=warnings, sym_args=sym_args)


def child_continue_args(prot_id):
    """Arguments runJobStep passes to the CLI with/without a checkpoint, in continue and restart mode."""
    from pyworkflow.protocol.constants import MODE_RESTART, MODE_RESUME

    from scipion_abinitrefine import constants as C
    from scipion_abinitrefine.tests.scipion_env import load_project

    project = load_project(PROJECT)
    prot = project.getProtocol(prot_id)
    calls = []
    prot.runJob = lambda program, args, **kw: calls.append([program] + list(args))
    job_args = prot._getJobArgs()
    ckpt = prot._getJobDir(C.CHECKPOINT)
    out = {"finished_without_checkpoint": not os.path.exists(ckpt)}  # removed after success (disk footprint)
    prot.runMode.set(MODE_RESUME)
    prot.runJobStep(job_args)
    out["finished_resume_runs_nothing"] = not calls
    # the directory as a killed run leaves it (runJob is replaced: only the arguments are checked)
    os.remove(prot._getJobDir(C.OUT_RESULT))
    open(ckpt, "a").close()
    prot.runMode.set(MODE_RESUME)
    prot.runJobStep(job_args)
    out["resume_with_checkpoint"] = calls[-1]
    out["checkpoint_kept"] = os.path.exists(ckpt)
    prot.runMode.set(MODE_RESTART)
    prot.runJobStep(job_args)
    out["restart_with_checkpoint"] = calls[-1]
    out["checkpoint_after_restart"] = os.path.exists(ckpt)
    prot.runMode.set(MODE_RESUME)
    prot.runJobStep(job_args)
    out["resume_without_checkpoint"] = calls[-1]
    prot.useGpu.set(True)
    prot.gpuList.set("1")
    out["gpu_args"] = prot._getComputeArgs()
    return out


SLURM_HOSTS = """[localhost]
PARALLEL_COMMAND = mpirun -np %_(JOB_NODES)d --map-by node %_(COMMAND)s
NAME = SLURM
MANDATORY = 0
SUBMIT_COMMAND = {sbatch} %_(JOB_SCRIPT)s
CANCEL_COMMAND = scancel %_(JOB_ID)s
CHECK_COMMAND = {squeue} %_(JOB_ID)s
SUBMIT_TEMPLATE = #!/bin/bash
    #SBATCH -J %_(JOB_NAME)s
    #SBATCH -o %_(JOB_LOGS)s.out
    #SBATCH -e %_(JOB_LOGS)s.err
    #SBATCH -p %_(JOB_QUEUE)s
    #SBATCH --ntasks=%_(JOB_NODES)d
    #SBATCH --cpus-per-task=%_(JOB_THREADS)d
    #SBATCH --mem=%_(JOB_MEMORY)s
    #SBATCH --gres=gpu:%_(GPU_COUNT)d
    %_(JOB_COMMAND)s
QUEUES = {{"{partition}": [["JOB_MEMORY", "4096", "Memory (MB)", "Memory the job may use"]]}}
QUEUES_DEFAULT = {{"JOB_GPUS": "0"}}
"""
# Stands in for Slurm's sbatch: keeps the script it was given and runs it on this machine in the background,
# as a one-node cluster would, answering like sbatch does.
FAKE_SBATCH = """#!/bin/bash
cp "$1" "$(dirname "$0")/submitted.job"
nohup bash "$1" > "$(dirname "$0")/job.out" 2>&1 &
echo $! > "$(dirname "$0")/job.pid"
echo "Submitted batch job 4242"
"""
FAKE_SQUEUE = """#!/bin/bash
kill -0 "$(cat "$(dirname "$0")/job.pid")" 2>/dev/null && echo "$1 R"
exit 0
"""


def slurm_partition() -> str | None:
    """The default partition of a Slurm cluster that answers here with a node ready for jobs, else None."""
    import shutil

    if not (shutil.which("sinfo") and shutil.which("sbatch")):
        return None
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%P %T"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in out.splitlines():
        part, _, state = line.partition(" ")
        if part.endswith("*") and state.strip() in ("idle", "mixed", "allocated"):
            return part[:-1]
    return None


def child_queue(bindir, tiny, partition=None):
    """The protocol through Scipion's queue system: a Slurm entry in hosts.conf, the submission script it
    renders for 2 threads + 1 GPU (not run), and a CPU run submitted to the end: to the Slurm cluster running
    here when ``partition`` (its partition) is given, else through a stand-in sbatch that runs the script."""
    import stat

    from pwem.protocols import ProtImportParticles
    from pyworkflow.protocol import HostConfig

    from scipion_abinitrefine.protocols import ProtAbInitioRefine
    from scipion_abinitrefine.tests.scipion_env import load_project

    hosts = os.environ["SCIPION_HOSTS"]
    os.makedirs(bindir, exist_ok=True)
    if partition:  # squeue prints nothing once the job has left the queue: Scipion reads that as finished
        commands = dict(sbatch="sbatch", squeue="squeue -h -j", partition=partition)
    else:
        for name, text in (("sbatch", FAKE_SBATCH), ("squeue", FAKE_SQUEUE)):
            exe = os.path.join(bindir, name)
            with open(exe, "w") as f:
                f.write(text)
            os.chmod(exe, os.stat(exe).st_mode | stat.S_IEXEC)
        commands = dict(sbatch=f"{bindir}/sbatch", squeue=f"{bindir}/squeue", partition="cpu")
    with open(hosts, "w") as f:
        f.write(SLURM_HOSTS.format(**commands))
    try:
        project = load_project(PROJECT)
        imp = [p for p in project.getRuns() if isinstance(p, ProtImportParticles)][0]

        def new(**kw):
            prot = project.newProtocol(ProtAbInitioRefine, **kw)
            prot.inputParticles.set(imp)
            prot.inputParticles.setExtended("outputParticles")
            prot._useQueue.set(True)
            prot.setQueueParams([commands["partition"], {"JOB_MEMORY": "4096"}])
            return prot

        host = project.getHostConfig("localhost")
        gpu = new(**dict(tiny, numberOfThreads=2, useGpu=True, gpuList="1"))
        project.saveProtocol(gpu)
        d = dict(host.getQueuesDefault())
        d.update(gpu.getSubmitDict())
        d["JOB_COMMAND"] = "COMMAND"
        rendered = host.getSubmitTemplate() % d
        prot = new(objLabel="ab-initio through the queue", **tiny)
        project.launchProtocol(prot)  # submitted: returns at once, the job runs on the "node"
        t0 = time.time()
        while time.time() - t0 < 420:  # the job writes its own run.db; the project copies it in on update
            time.sleep(1.0)
            project._updateProtocol(prot)  # what the GUI's refresh does
            if not prot.isActive():
                break
        if not prot.isFinished():
            logs = [open(f).read()[-3000:] for f in (prot.getStdoutLog(), os.path.join(bindir, "job.out"))
                    if os.path.exists(f)]
            raise RuntimeError(f"queued run ended {prot.getStatus()}: {prot.getErrorMessage()}\n" + "\n".join(logs))
        job_ids = [str(j) for j in prot.getJobIds()]
        slurm_state = None
        if partition:  # what Slurm itself kept of the job: its script and its end state
            submitted = subprocess.run(["scontrol", "write", "batch_script", job_ids[-1], "-"], capture_output=True,
                                       text=True, timeout=30).stdout
            # the run marks itself finished in run.db a moment before its batch script exits: wait (bounded)
            # for Slurm to record the job's end state rather than read it mid-exit
            t1 = time.time()
            while True:
                show = subprocess.run(["scontrol", "show", "job", job_ids[-1]], capture_output=True, text=True,
                                      timeout=30).stdout
                slurm_state = next((w.split("=", 1)[1] for w in show.split() if w.startswith("JobState=")), show)
                if slurm_state not in ("RUNNING", "COMPLETING", "PENDING", "CONFIGURING") or time.time() - t1 > 120:
                    break
                time.sleep(1.0)
        else:
            with open(os.path.join(bindir, "submitted.job")) as f:
                submitted = f.read()
        return dict(rendered=rendered, submitted=submitted, job_ids=job_ids, partition=commands["partition"],
                    slurm=bool(partition), slurm_state=slurm_state,
                    outputs=sorted(k for k, _ in prot.iterOutputAttributes()),
                    job_dir=os.path.abspath(prot._getExtraPath()))
    finally:
        HostConfig.writeBasic(hosts)


def child_read(prot_id):
    from scipion_abinitrefine import constants as C
    from scipion_abinitrefine.convert import particle_pose
    from scipion_abinitrefine.tests.scipion_env import load_project

    project = load_project(PROJECT)
    prot = project.getProtocol(prot_id)
    inp = prot.inputParticles.get()
    apix = inp.getSamplingRate()
    used = []
    for p in prot.outputParticles.iterItems(orderBy="id"):
        index, fn = p.getLocation()
        half = getattr(p, C.HALF_SET_ATTR, None)
        ll = getattr(p, "_rlnLogLikeliContribution", None)
        used.append(dict(id=int(p.getObjId()), index=int(index), file=os.path.abspath(fn),
                         half=None if half is None else half.get(), pose=list(particle_pose(p, apix)),
                         has_ctf=p.hasCTF(), loglik=None if ll is None else ll.get()))
    unused, unused_class = [], {}
    if hasattr(prot, "outputUnusedParticles"):
        for p in prot.outputUnusedParticles.iterItems(orderBy="id"):
            unused.append(int(p.getObjId()))
            index, fn = p.getLocation()
            unused_class[str(stack_key(os.path.abspath(fn), int(index) - 1))] = int(p._rlnClassNumber.get())
    # the chain into RELION: scipion-em-relion's own converter writes our output particles for its jobs
    from relion.convert import writeSetOfParticles

    chain_dir = os.path.abspath(prot._getExtraPath("relion_chain"))
    os.makedirs(chain_dir, exist_ok=True)
    relion_star = os.path.join(chain_dir, "particles.star")
    writeSetOfParticles(prot.outputParticles, relion_star, outputDir=os.path.dirname(relion_star))
    vol = prot.outputVolume
    x, y = prot.outputFSC.getData()
    fscs = [dict(label=f.getObjLabel(), x=list(f.getData()[0]), y=list(f.getData()[1]))
            for f in prot.outputFSCs.iterItems(orderBy="id")]
    return dict(input_ids=[int(p.getObjId()) for p in inp.iterItems(orderBy="id")], used=used, unused=unused,
                unused_class=unused_class,
                alignment=str(prot.outputParticles.getAlignment()),
                out_sampling=prot.outputParticles.getSamplingRate(),
                volume=os.path.abspath(vol.getFileName()), vol_sampling=vol.getSamplingRate(),
                half_maps=[os.path.abspath(h) for h in vol.getHalfMaps().split(",")] if isinstance(
                    vol.getHalfMaps(), str) else [os.path.abspath(h) for h in vol.getHalfMaps()],
                fsc_x=[float(v) for v in x], fsc_y=[float(v) for v in y], fscs=fscs,
                job_dir=os.path.abspath(prot._getJobDir()), relion_star=relion_star, summary=prot.summary(),
                methods=prot.methods(),
                citations=prot.citations())


# ---------------------------------------------------------------------------------------------------------
# checks (``run`` = child_run's result, ``out`` = child_read's, ``cont`` = child_continue_args')
# ---------------------------------------------------------------------------------------------------------

def check_validation(run):
    """The form's validation names the parameter for bad settings and accepts good ones."""
    errors = run["errors"]
    assert errors["good"] == []
    assert any("Maximum resolution" in e and "Nyquist" in e for e in errors["nyquist"]), errors["nyquist"]
    assert any("alignment resolution" in e for e in errors["align"]), errors["align"]
    assert any("minibatch" in e.lower() for e in errors["minibatch"]), errors["minibatch"]
    assert any("Symmetry" in e and "C0" in e for e in errors["symmetry"]), errors["symmetry"]
    # the form's group + order reach the job as RELION's name (the order is ignored for T, O, I)
    for g, want in (("1", "D7"), ("5", "I2")):
        args = run["sym_args"][g]
        assert args[args.index("--sym") + 1] == want, args
    # numeric bounds come from the engine's table through the form's job options
    assert any("Initial learning rate" in e for e in errors["lr"]), errors["lr"]
    # 90 particles per half: the form warns (the user may go on)
    assert any("per half-set" in w for w in run["warnings"]), run["warnings"]


def check_partition(out):
    """Used + unused particles = the input (disjoint, same ids); every used one carries its half-set."""
    used_ids = [u["id"] for u in out["used"]]
    assert len(used_ids) + len(out["unused"]) == len(out["input_ids"]) == N
    assert set(used_ids) | set(out["unused"]) == set(out["input_ids"])
    assert not set(used_ids) & set(out["unused"])
    assert 0 < len(used_ids) <= NUM_USE and out["unused"]
    # the junk class's particles (rlnClassNumber 2 in unused.star) carry it in Scipion; those the job did not
    # use (num particles) carry 0
    un = io.read_star(os.path.join(out["job_dir"], names.OUT_UNUSED))
    want = {str(stack_key(p, i)): int(k) for p, i, k in zip(un.stack_paths, un.stack_index.tolist(),
                                                            un.class_number)}
    assert out["unused_class"] == want and set(want.values()) <= {0, 2} and 0 in want.values(), out["unused_class"]
    assert out["alignment"] == "Projection" and math.isclose(out["out_sampling"], APIX, rel_tol=1e-6)
    halves = [u["half"] for u in out["used"]]
    assert set(halves) == {1, 2}, set(halves)
    assert all(u["has_ctf"] for u in out["used"])


def check_transforms(out):
    """Each used particle's Transform converts back to the pose and score the job wrote."""
    job = io.read_star(os.path.join(out["job_dir"], "particles.star"))
    by_key = {stack_key(p, i): k for k, (p, i) in enumerate(zip(job.stack_paths, job.stack_index.tolist()))}
    assert len(by_key) == len(out["used"])
    for u in out["used"]:
        k = by_key[stack_key(u["file"], u["index"] - 1)]
        rot, tilt, psi, ox, oy = u["pose"]
        assert abs(poses.angle_diff(rot, job.rot[k])) < 0.01 or job.tilt[k] < 0.01, (u, job.rot[k])
        assert abs(tilt - job.tilt[k]) < 0.01
        assert poses.rotation_distance_deg(rot, tilt, psi, job.rot[k], job.tilt[k], job.psi[k]) < 0.01
        assert abs(ox - job.origin_x[k]) < 0.01 and abs(oy - job.origin_y[k]) < 0.01
        assert u["half"] == int(job.half[k])
        assert math.isclose(u["loglik"], job.loglik[k], abs_tol=1e-4)  # the score reaches Scipion too


def check_relion_chain(out):
    """scipion-em-relion's converter writes our particles with the job's poses (1e-4 deg, 1e-3 A) and half-sets."""
    job = io.read_star(os.path.join(out["job_dir"], "particles.star"))
    rel = io.read_star(out["relion_star"])
    assert len(rel) == len(job) and rel.half is not None
    by_name = {os.path.basename(str(p)) + f"@{i}": k for k, (p, i) in
               enumerate(zip(job.stack_paths, job.stack_index.tolist()))}
    for k in range(len(rel)):
        j = by_name.get(os.path.basename(str(rel.stack_paths[k])) + f"@{int(rel.stack_index[k])}")
        if j is None:  # relion may have linked the stack under another name: fall back to the row order
            j = k
        d = poses.rotation_distance_deg(rel.rot[k], rel.tilt[k], rel.psi[k], job.rot[j], job.tilt[j], job.psi[j])
        assert d < 1e-4, (k, d)
        assert abs(rel.origin_x[k] - job.origin_x[j]) < 1e-3 and abs(rel.origin_y[k] - job.origin_y[j]) < 1e-3
        assert int(rel.half[k]) == int(job.half[j])


def check_volume_and_fsc(out):
    """The volume carries both half-maps; the FSC is the job's corrected curve; summary, methods, citations."""
    assert math.isclose(out["vol_sampling"], APIX, rel_tol=1e-6)
    assert len(out["half_maps"]) == 2
    avg, apix = io.read_mrc(out["volume"])
    assert avg.shape == (BOX,) * 3 and math.isclose(apix, APIX, rel_tol=1e-6)
    halves = [io.read_mrc(h) for h in out["half_maps"]]
    for m, a in halves:
        assert m.shape == (BOX,) * 3 and math.isclose(a, APIX, rel_tol=1e-6) and np.isfinite(m).all() and m.std() > 0
    assert not np.allclose(halves[0][0], halves[1][0])  # two independent reconstructions
    assert np.allclose(avg, 0.5 * (halves[0][0] + halves[1][0]), atol=1e-4 * np.abs(avg).max())
    table = np.genfromtxt(os.path.join(out["job_dir"], "fsc.csv"), delimiter=",", names=True)
    assert len(out["fsc_x"]) == len(table) > 5
    assert np.allclose(out["fsc_x"], table["freq_1_per_A"]) and np.allclose(out["fsc_y"], table["fsc_corrected"])
    assert np.all(np.diff(out["fsc_x"]) > 0) and math.isclose(out["fsc_x"][-1], 1 / (2 * APIX), rel_tol=0.05)
    # the SetOfFSCs: every curve of fsc.csv under RELION postprocess's label
    assert [f["label"] for f in out["fscs"]] == [lab for _, lab in names.FSC_CURVES], out["fscs"]
    for f, (col, _) in zip(out["fscs"], names.FSC_CURVES):
        assert np.allclose(f["x"], table["freq_1_per_A"]) and np.allclose(f["y"], table[col]), f["label"]
    assert not np.allclose(table["fsc_randomized"], table["fsc_masked"])  # four curves, not one four times
    assert any("resolution" in s for s in out["summary"]) and out["methods"]
    assert any("CONVERGED" in s for s in out["summary"]), out["summary"]  # the verdict, either way
    # the form's random starts reached the job: each half kept one of them
    assert sum(f"of {TINY['numStarts']} (log-likelihood" in s for s in out["summary"]) == 2, out["summary"]
    cites = " ".join(out["citations"])
    assert "Punjani et al., Nature Methods, 2017" in cites and "Error" not in cites, out["citations"]
    assert "Kim et al., bioRxiv, 2025" in cites, out["citations"]  # was "Kim et al., , 2025"


def check_continue_args(res):
    """runJobStep passes --continue only when resuming with a checkpoint; restart removes the checkpoint."""
    assert res["finished_without_checkpoint"] and res["finished_resume_runs_nothing"] and res["checkpoint_kept"]
    for key in ("resume_with_checkpoint", "restart_with_checkpoint", "resume_without_checkpoint"):
        cmd = res[key]
        assert cmd[1:4] == ["-m", "scipion_abinitrefine.cli", "run"], cmd
        assert cmd[cmd.index("--num-particles") + 1] == str(NUM_USE)
        assert cmd[cmd.index("--backend") + 1] == "cpu" and cmd[cmd.index("--threads") + 1] == "1"
    assert "--continue" in res["resume_with_checkpoint"]
    assert "--continue" not in res["restart_with_checkpoint"] and not res["checkpoint_after_restart"]
    assert "--continue" not in res["resume_without_checkpoint"]
    gpu = res["gpu_args"]
    assert gpu[gpu.index("--backend") + 1] == "auto" and gpu[gpu.index("--gpu") + 1] == "1"


def check_queue(res, tiny):
    """The submission requests what the form asked for and the queued run produced the outputs."""
    r = res["rendered"]
    assert "#SBATCH --cpus-per-task=2" in r and "#SBATCH --gres=gpu:1" in r, r
    assert f"#SBATCH -p {res['partition']}" in r and "#SBATCH --mem=4096" in r, r
    s = res["submitted"]
    assert "pw_protocol_run.py" in s and f"#SBATCH --cpus-per-task={tiny['numberOfThreads']}" in s, s
    assert "#SBATCH --gres=gpu:0" in s, s  # a CPU run asks for no GPU
    if res["slurm"]:  # Slurm ran it: the id Scipion keeps is Slurm's, and Slurm saw it complete
        assert len(res["job_ids"]) == 1 and res["job_ids"][0].isdigit(), res["job_ids"]
        assert res["slurm_state"] == "COMPLETED", res["slurm_state"]
    else:
        assert res["job_ids"] == ["4242"], res["job_ids"]
    assert {"outputParticles", "outputVolume", "outputFSC"} <= set(res["outputs"]), res["outputs"]


def child_form_values(values):
    """The engine's value of each job parameter of the form: with ``values`` set ('set') and in a fresh form
    ('fresh'), read back through the arguments the protocol gives the job's command line."""
    from scipion_abinitrefine.cli import job_params_from_args
    from scipion_abinitrefine.engine import params
    from scipion_abinitrefine.protocols import ProtAbInitioRefine
    from scipion_abinitrefine.tests.scipion_env import new_project

    project = new_project("form_values")
    fields = dict(params.form_fields())

    def engine_values(prot):
        p = job_params_from_args(prot._getJobArgs())
        return {name: getattr(p, f.name) for name, f in fields.items()}

    values = dict(values)
    if "symmetry" in values:  # the form holds it as a group and an order
        from scipion_abinitrefine.engine.symmetry import to_group_order

        values["symmetryGroup"], values["symmetryOrder"] = to_group_order(values.pop("symmetry"))
    return dict(set=engine_values(project.newProtocol(ProtAbInitioRefine, **values)),
                fresh=engine_values(project.newProtocol(ProtAbInitioRefine)))


TEMPLATE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "templates",
                        "abinitrefine_relion_local.json.template")
# the chain of the shipped workflow template: class, what each protocol takes from the one before
TEMPLATE_CHAIN = [
    ("ProtImportParticles", {}),
    ("ProtAbInitioRefine", {"inputParticles": "ProtImportParticles.outputParticles"}),
    ("ProtRelionRefine3D", {"inputParticles": "ProtAbInitioRefine.outputParticles",
                            "referenceVolume": "ProtAbInitioRefine.outputVolume"}),
    ("ProtRelionCreateMask3D", {"inputVolume": "ProtRelionRefine3D.outputVolume"}),
    ("ProtRelionPostprocess", {"protRefine": "ProtRelionRefine3D", "solventMask": "ProtRelionCreateMask3D.outputMask"}),
]


def child_template(star):
    """Load the shipped workflow template (its fields filled as the template dialog fills them) into a new
    project: the protocols, their links and the settings that make RELION's refinement local."""
    from pwem import Domain
    from pyworkflow.template import LocalTemplate

    from scipion_abinitrefine.tests.scipion_env import new_project

    plugin = Domain.getPlugins()["scipion_abinitrefine"]._pluginInstance
    t = LocalTemplate("scipion_abinitrefine", TEMPLATE)
    t.replaceEnvVariables()  # as the template dialog does: then the fields are the odd parts between ~
    t.parseContent()
    fields = {p.getAlias(): p for p in t.getParams().values()}
    fields["star"].setValue(star)
    path = t.createTemplateFile()
    project = new_project("template")
    project.loadProtocols(path)
    prots = list(project.getRuns())
    byId = {p.getObjId(): p for p in prots}
    out = {"fields": sorted(fields), "protocols": [], "found": [x.getObjId() for x in plugin.getTemplates()],
           "description": t.description}
    for p in sorted(prots, key=lambda p: p.getObjId()):
        links = {}
        for name, param in p.getDefinition().iterParams():
            if type(param).__name__ == "PointerParam":
                ptr = getattr(p, name)
                obj = ptr.getObjValue()
                if obj is not None:
                    src = byId.get(obj.getObjId(), obj)
                    links[name] = type(src).__name__ + (f".{ptr.getExtended()}" if ptr.getExtended() else "")
        values = {k: getattr(p, k).get() for k in ("copyAlignment", "angularSamplingDeg", "localSearchAutoSamplingDeg",
                                                   "numberOfMpi", "importFrom", "starFile")
                  if hasattr(p, k)}
        out["protocols"].append(dict(cls=type(p).__name__, links=links, values=values))
    return out


def child_export_chain(path):
    """The chain of ``TEMPLATE_CHAIN`` built in a project and exported as JSON (how the shipped template was
    made; its input STAR, maximum resolution and mask diameter were then turned into template fields)."""
    from pwem.protocols import ProtImportParticles
    from relion.protocols import ProtRelionCreateMask3D, ProtRelionPostprocess, ProtRelionRefine3D

    from scipion_abinitrefine.protocols import ProtAbInitioRefine
    from scipion_abinitrefine.tests.scipion_env import new_project

    project = new_project("template_export")
    imp = project.newProtocol(ProtImportParticles, objLabel="import particles (RELION STAR)",
                              importFrom=ProtImportParticles.IMPORT_FROM_RELION, starFile="particles.star")
    ours = project.newProtocol(ProtAbInitioRefine, objLabel="ab-initio refinement (two half-maps)")
    ref = project.newProtocol(ProtRelionRefine3D, objLabel="relion - 3D auto-refine, local searches",
                              copyAlignment=True, angularSamplingDeg=4, localSearchAutoSamplingDeg=4,
                              initialLowPassFilterA=15.0, maskDiameterA=200, numberOfMpi=3)
    mask = project.newProtocol(ProtRelionCreateMask3D, objLabel="relion - mask", initialLowPassFilterA=15.0)
    post = project.newProtocol(ProtRelionPostprocess, objLabel="relion - postprocess")
    for prot in (imp, ours, ref, mask, post):
        project.saveProtocol(prot)
    ours.inputParticles.set(imp)
    ours.inputParticles.setExtended("outputParticles")
    ref.inputParticles.set(ours)
    ref.inputParticles.setExtended("outputParticles")
    ref.referenceVolume.set(ours)
    ref.referenceVolume.setExtended("outputVolume")
    mask.inputVolume.set(ref)
    mask.inputVolume.setExtended("outputVolume")
    post.protRefine.set(ref)
    post.solventMask.set(mask)
    post.solventMask.setExtended("outputMask")
    for prot in (imp, ours, ref, mask, post):
        project.saveProtocol(prot)
    project.getRunsGraph(refresh=True)
    project.exportProtocols([imp, ours, ref, mask, post], path)
    return {"path": path}


def check_template(res, star):
    """The shipped template: found by Scipion through the plugin, its fields, the chain and RELION's local
    refinement settings (poses kept as priors, local searches from the first iteration, >= 3 MPI ranks)."""
    assert any("abinitrefine_relion_local" in x for x in res["found"]), res["found"]
    assert res["fields"] == ["diameter", "maxres", "star"], res["fields"]
    assert "RELION" in res["description"] and "local" in res["description"]
    got = [(p["cls"], p["links"]) for p in res["protocols"]]
    assert got == TEMPLATE_CHAIN, got
    byCls = {p["cls"]: p["values"] for p in res["protocols"]}
    assert byCls["ProtImportParticles"]["starFile"] == star and byCls["ProtImportParticles"]["importFrom"] == 3
    rel = byCls["ProtRelionRefine3D"]
    assert rel["copyAlignment"] and rel["angularSamplingDeg"] == rel["localSearchAutoSamplingDeg"] == 4, rel
    assert rel["numberOfMpi"] >= 3, rel  # RELION's auto-refine needs a leader and two half-set ranks
