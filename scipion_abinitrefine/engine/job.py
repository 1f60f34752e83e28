"""The Homogeneous Ab-Initio Refinement job (docs/design.rst): two gold-standard halves, each
reconstructed from its own random start by SGD, kept in one frame by low-resolution map alignment,
finished by per-half Fourier reconstruction and a gold-standard FSC.

Nothing crosses between the halves except the rigid transform (rotation, shift, hand) found by aligning
half B's map to half A's at or below ``align_res_A`` (default 20 A).
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict

import numpy as np

from . import checkpoint, classes, halves, inputs, io, names, outdir, outputs, threads
from .halves import choose_used, split_halves
from .inputs import JobInputError
from .params import JobParams
from .sgd import SGDRun
from .signals import JobInterrupted, StopOnSignals  # noqa: F401 (JobInterrupted: the job's own)
from .starts import (
    START_CHECK_EVERY,
    START_ELIMINATION_Z,
    START_SCORE_IMAGES,
    lead_z,
    start_evidence,
    start_radii,
    start_seed,
    weighted_means,
)

# parameters a --continue may change: they do not change results
RESUME_FREE = ("backend", "checkpoint_minutes", "keep_checkpoint")
FIRST_CHECKPOINT_ITER = 3  # a checkpoint this early, then every checkpoint_minutes
PARALLEL_FINAL_MAX_BOX = 128  # larger boxes: the halves' final passes in turn (memory)


class Job:
    def __init__(self, ps, out_dir: str, params: JobParams, log=print):
        self.ps = ps
        self.out = out_dir
        self.p = params
        self.say = log or (lambda *a, **k: None)
        os.makedirs(out_dir, exist_ok=True)
        self.ckpt = os.path.join(out_dir, outdir.CHECKPOINT)
        self.half = split_halves(len(ps), params.seed, ps.micrograph if params.split_by_micrograph else None)
        self.used = choose_used(self.half, params.num_particles, params.seed)
        sp = params.sgd_params()
        self.runs = {}
        self.candidates = {}  # every random start of each half while they compete (stage "explore")
        for k, (name, h) in enumerate((("A", 1), ("B", 2))):
            idx = np.flatnonzero(self.used & (self.half == h))
            # independent random starts: different seeds per half and per start
            self.candidates[name] = [SGDRun(ps, idx, sp, backend=params.backend, name=name,
                                            rng_seed=start_seed(params.seed, k, j), start=j)
                                     for j in range(max(1, params.n_starts))]
            self.runs[name] = self.candidates[name][0]
        self.alignments = []
        self.starts = {}  # per half: every start's score and the one kept
        self.classes = {}  # per half with junk classes: the share of the images each class explains
        self.stage = "explore" if params.n_starts > 1 else "sgd"
        self.workers = None  # the two halves' worker threads (threads.half_workers), made on first use
        self.stop_signal = None  # set by SIGINT/SIGTERM: stop after the current iteration
        self._fingerprint = None  # the data's (checkpoint.fingerprint), computed at the first save or load

    # ------------------------------------------------------------------------------ checkpoint
    def save(self):
        st = {"params": np.frombuffer(json.dumps(asdict(self.p)).encode(), np.uint8),
              "fingerprint2": np.frombuffer(self.fingerprint().encode(), np.uint8),
              "stage": np.frombuffer(self.stage.encode(), np.uint8),
              "log": np.frombuffer(json.dumps(self.full_log(all_starts=True)).encode(), np.uint8),
              "alignments": np.frombuffer(json.dumps(self.alignments).encode(), np.uint8),
              "starts": np.frombuffer(json.dumps(self.starts).encode(), np.uint8),
              "classes": np.frombuffer(json.dumps(self.classes).encode(), np.uint8)}
        for name, run in self._all_runs():
            for k, v in run.state_dict().items():
                st[f"{name}__{k}"] = np.asarray(v if v is not None else np.nan)
        with outdir.atomic(self.ckpt) as tmp:  # a kill or a full disk during the write keeps the previous one
            np.savez(tmp, **st)

    def fingerprint(self) -> str:
        """The data's fingerprint (:func:`checkpoint.fingerprint`: it reads a sample of images), once."""
        if self._fingerprint is None:
            self._fingerprint = checkpoint.fingerprint(self.ps)
        return self._fingerprint

    def load(self):
        try:
            z = checkpoint.read(self.ckpt)
        except checkpoint.CheckpointError as e:
            raise JobInputError(str(e)) from None
        if "fingerprint2" in z or "fingerprint" in z:  # fingerprint: checkpoints of earlier versions
            saved_fp, now_fp = ((z["fingerprint2"], self.fingerprint()) if "fingerprint2" in z
                                else (z["fingerprint"], checkpoint.legacy_fingerprint(self.ps)))
            if saved_fp.tobytes().decode() != now_fp:
                raise JobInputError(
                    f"--continue with other data than the checkpoint in {self.out} was made from ({len(self.ps)} "
                    "rows now; the images, their order, their CTF parameters, the box or the pixel size differ): "
                    "continue with the same particles, or start a new job in a new --out")
        saved = json.loads(z["params"].tobytes().decode())
        now = json.loads(json.dumps(asdict(self.p)))
        diff = {k: (saved.get(k), v) for k, v in now.items() if saved.get(k) != v}
        free = {k: d for k, d in diff.items() if k in RESUME_FREE}
        diff = {k: d for k, d in diff.items() if k not in RESUME_FREE}
        if diff:
            raise JobInputError(f"--continue with different parameters than the checkpoint in {self.out}: "
                                f"{diff} (saved, requested); rerun with the same parameters or a new --out")
        if free:
            self.say(f"--continue: {', '.join(f'{k} {a} -> {b}' for k, (a, b) in free.items())} (no effect on "
                     "results)")
        self.stage = z["stage"].tobytes().decode()
        self.alignments = json.loads(z["alignments"].tobytes().decode())
        self.starts = json.loads(z["starts"].tobytes().decode()) if "starts" in z else {}
        self.classes = json.loads(z["classes"].tobytes().decode()) if "classes" in z else {}
        for name, runs in self.candidates.items():  # the starts still alive, in the order they were kept
            rounds = self.starts.get(name, {}).get("rounds")
            if rounds:
                alive = rounds[-1]["kept"]
                self.candidates[name] = [runs[j] for j in alive]
                self.runs[name] = self.candidates[name][0]
        log = json.loads(z["log"].tobytes().decode())
        try:
            for name, run in self._all_runs():
                run.load_state({k.split("__", 1)[1]: z[k] for k in z if k.startswith(name + "__")})
                run.log = [e for e in log if e.get("half") == run.name and e.get("start", 0) == run.start]
        except (KeyError, ValueError, TypeError, IndexError) as e:
            raise JobInputError(f"the checkpoint {self.ckpt} is incomplete ({type(e).__name__}: {e}): start again "
                                "without --continue (--overwrite, or a new --out)") from None

    def full_log(self, all_starts: bool = False):
        runs = [r for _, r in self._all_runs()] if all_starts else [self.runs["A"], self.runs["B"]]
        return sorted(sum((r.log for r in runs), []), key=lambda e: (e["iteration"], e["half"], e.get("start", 0)))

    def _all_runs(self):
        """(checkpoint prefix, run) of every live run: the kept one as A/B, competing starts as A1, A2, ..."""
        for name, runs in self.candidates.items():
            for j, run in enumerate(runs):
                yield (name if j == 0 else f"{name}{j}"), run

    # ------------------------------------------------------------------------------ random starts
    def starts_to_keep(self) -> int | None:
        """How many starts per half go on from this iteration: half of them once the radius has reached the
        halving radius; from the selection radius on, every ``START_CHECK_EVERY`` iterations, those not
        clearly worse than the best (0: :meth:`choose_starts` by evidence); one at the last radius
        (:func:`starts.start_radii`: the particle must span enough resolution elements for its shape to tell
        the starts apart); None while they keep competing."""
        run = self.runs["A"]
        if run.iteration < self.p.init_iters:
            return None
        r = run.radius_at(run.iteration)
        halve, select, last = start_radii(run.r_init, run.r_max, run.rp, run.box)
        if r >= last:
            return 1
        if r >= select:
            done = [rd["iteration"] for st in self.starts.values() for rd in st.get("rounds", [])
                    if rd.get("rule") == "evidence"]
            return 0 if not done or run.iteration - max(done) >= START_CHECK_EVERY else None
        n = max(len(c) for c in self.candidates.values())
        if n == self.p.n_starts > 2 and r >= halve:  # once: all still compete
            return (n + 1) // 2
        return None

    def choose_starts(self, keep: int = 1):
        """Keep, per half, the ``keep`` random starts whose models best explain the half's images, or with
        ``keep=0`` those whose score is not ``START_ELIMINATION_Z`` paired standard errors below the best's
        (:func:`starts.lead_z`); the stage moves on once one start per half is left.

        Score: mean log marginal likelihood ratio (model against noise alone, poses marginalised at T = 1)
        of the same fixed subset of the half's images under every start's model at the current radius, with
        one noise model (the starts' per-shell mean) so that the scores compare. Nothing from the other half
        enters: each half chooses on its own images.
        """
        for k, name in enumerate(("A", "B")):
            runs = self.candidates[name]
            if len(runs) <= max(keep, 1):
                continue
            lead = runs[0]
            rng = np.random.default_rng(np.random.SeedSequence([self.p.seed, k + 1, 0x5C0E]))
            sel = np.sort(rng.permutation(len(lead.idx))[:min(START_SCORE_IMAGES, len(lead.idx))])
            ev, w = start_evidence(runs, sel, np.mean([r.s2_shell for r in runs], axis=0))
            scores = weighted_means(ev, w)
            order = sorted(range(len(runs)), key=lambda j: -scores[j])  # best first; ties: lower start
            behind = lead_z(ev, w)
            order = [j for j in order if behind[j] < START_ELIMINATION_Z] if keep == 0 else order[:keep]
            self.candidates[name] = [runs[j] for j in order]
            self.runs[name] = runs[order[0]]
            rounds = self.starts.setdefault(name, {"rounds": []})["rounds"]
            rounds.append(dict(iteration=int(lead.iteration), images=int(len(sel)),
                               starts=[int(r.start) for r in runs], scores=[float(x) for x in scores],
                               behind_se=[float(min(x, 1e6)) for x in behind],
                               rule="evidence" if keep == 0 else "rank", kept=[int(runs[j].start) for j in order]))
            if len(order) == 1:
                self.starts[name]["kept"] = int(runs[order[0]].start)
            if keep == 0 and len(order) == len(runs):
                continue  # no start clearly behind yet: nothing to say
            res_A = lead.box * lead.apix / lead.last_radius()
            self.say(f"  half {name}: {len(runs)} random starts at {res_A:.1f} A, log-likelihood gain per image "
                     f"{', '.join(f'{x:.3f}' for x in scores)}: kept start{'s' if len(order) > 1 else ''} "
                     f"{', '.join(str(runs[j].start + 1) for j in order)}")
        if all(len(c) == 1 for c in self.candidates.values()):
            self.stage = "sgd"

    def settle_classes(self):
        """With junk classes: each half's particle class is the one that explains most of its images now
        (:func:`classes.settle`), before the halves are aligned."""
        for name, run in self.runs.items():
            share = classes.settle(run)
            if share is not None:
                self.classes[name] = share
                self.say(f"  half {name}: classes explain {', '.join(f'{100 * x:.0f}%' for x in share)} of "
                         "the images; the first is the particle's")

    # ------------------------------------------------------------------------------ alignment
    def align_halves(self):
        """Align half B's model to half A's at the alignment resolution (:func:`halves.align_halves`)."""
        rec, msg = halves.align_halves(self.runs["A"], self.runs["B"], self.ps.box, self.ps.apix,
                                       self.p.align_res_A, self.p.seed)
        self.alignments.append(rec)
        self.say(msg)

    # ------------------------------------------------------------------------------ main loop
    def _halves(self, fa, fb):
        """fa() and fb(): side by side on the half workers when there are (``threads.half_workers``), else in
        turn. Both halves' work is deterministic per half (the search per image, the back-projection in
        slabs), so the results are the same either way."""
        if self.workers is None:
            self.workers = threads.half_workers(self.runs["A"].be.name) or False
        if self.workers:
            return self.workers.run(fa, fb)
        return fa(), fb()

    def _step_halves(self) -> dict:
        """One iteration of every live run (every competing start) of both halves; the last log entry."""
        def step(name):
            e = None
            for run in self.candidates[name]:
                if not run.done:
                    e = run.step()
            return e

        ea, eb = self._halves(lambda: step("A"), lambda: step("B"))
        return eb or ea

    def run_sgd(self):
        A, B = self.runs["A"], self.runs["B"]
        last_ckpt = time.time()
        t_start = time.time()
        n_tot = max(A.n_iters, B.n_iters)
        while not (A.done and B.done):
            keep = self.starts_to_keep() if self.stage == "explore" else None
            if keep is not None:
                self.choose_starts(keep)
                A, B = self.runs["A"], self.runs["B"]
            e = self._step_halves()
            it = A.iteration
            if it % 10 == 0 or A.done:
                el = time.time() - t_start
                self.say(f"iter {it:5d}/{n_tot}  res {e['resolution_A']:6.2f} A  minibatch {e['minibatch']:4d}  "
                         f"ESS A {A.log[-1]['ess']:7.1f} B {B.log[-1]['ess']:7.1f}  lr {e['lr']:.3f}  "
                         f"seen {A.seen.sum() + B.seen.sum()}  {el:7.1f} s  ETA {_eta(A):>8s}", flush=True)
            if self.p.align_every > 0 and it >= self.p.init_iters and it % self.p.align_every == 0 \
                    and self.stage != "explore":  # no alignment of halves that are not chosen yet
                self.align_halves()
            if self.stop_signal is not None:
                self.save()
                raise JobInterrupted(self.stop_signal, A.iteration, self.out)
            if it == FIRST_CHECKPOINT_ITER or time.time() - last_ckpt > 60 * self.p.checkpoint_minutes:
                self.save()
                last_ckpt = time.time()
        if self.stage == "explore":  # a schedule shorter than its initial iterations
            self.choose_starts()
        self.settle_classes()
        self.align_halves()
        self.stage = "final"
        self.save()

    def pose_tests(self, maps: dict, gs: dict) -> tuple[dict, dict]:
        """The verdict's pose tests (:func:`halves.cross_pose_agreement`): against the SGD's last models, then
        against the output half-maps ``maps``, each shrunk per shell by the halves' FSC (``gs``) to its
        estimate of the signal; the images' evidence under each half-map (which one they prefer) with the
        latter. Returns (SGD models, half-maps).

        Both, because each misses what the other sees. Two halves that share a wrong shape kept smooth SGD
        models that gave 32% of the images the same pose, as right runs of elongated particles do, while
        their half-maps gave 24% (right runs: 41% and more; docs/results.rst). But a
        half-map holds its reconstruction noise, which gives the images sharp posteriors on that noise: a
        featureless ball's spanned 2% of the orientations against its SGD models' 69%, so the spread is
        asked of the SGD models. A half-map's shell whose signal fraction is f (the halves' unmasked FSC
        there) is best estimated as the map times f. The runs' models end as these maps (the checkpoint of
        stage "final" keeps the SGD's).
        """
        from . import fsc

        A, B = self.runs["A"], self.runs["B"]
        sgd = halves.cross_pose_agreement(A, B, seed=self.p.seed, own_evidence=False, check=self.check_stop)
        w = np.clip(np.asarray(gs["fsc_unmasked"], np.float64), 0.0, 1.0)
        for name in "AB":
            self.runs[name].set_model_volume(fsc.filter_by_shell(maps[name], w))
        return sgd, halves.cross_pose_agreement(A, B, seed=self.p.seed, check=self.check_stop)

    def check_stop(self):
        """In the final stage a signal stops the job at once (the stage-"final" checkpoint is on disk and the
        stage reruns from it): called between the batches of every pass over the particles."""
        if self.stop_signal is not None:
            raise JobInterrupted(self.stop_signal, self.runs["A"].iteration, self.out, saved=False)

    def _final_progress(self):
        """A ``final_pass`` progress callback: a line per half every ``FINAL_PROGRESS_SECONDS`` and when it
        ends, with its remaining time (the SGD's ETA does not include this pass, which at box 128 and 20,000
        particles takes minutes even on a GPU)."""
        t0 = time.time()
        last = {}

        def progress(run, done, total):
            self.check_stop()
            now = time.time()
            if done < total and now - last.get(run.name, t0) < FINAL_PROGRESS_SECONDS:
                return
            last[run.name] = now
            left = (now - t0) * (total - done) / max(done, 1)
            self.say(f"  final pass, half {run.name}: {done}/{total} particles  {now - t0:7.1f} s  "
                     f"ETA {_hms(left):>8s}", flush=True)

        return progress

    def finish(self) -> dict:
        """The final stage; a run that does not end (a signal, a full disk, an error) leaves no output of its
        own behind, only the stage-"final" checkpoint that ``--continue`` reruns it from: a directory holds
        a complete result (``result.json`` last) or a resumable checkpoint, never a half-written set."""
        try:
            return self._finish()
        except BaseException:
            if self.stage != "done":
                for f in names.OUTPUTS:
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(os.path.join(self.out, f))
            raise

    def _finish(self) -> dict:
        from . import fsc, report, verdict

        A, B = self.runs["A"], self.runs["B"]
        self.say("final pass: poses of every seen particle against its half's final model", flush=True)
        progress = self._final_progress()
        # side by side up to box 128 (the padded full-box accumulator is 200 MB there, 1.6 GB at box 256)
        if self.ps.box <= PARALLEL_FINAL_MAX_BOX:
            maps = dict(zip("AB", self._halves(lambda: A.final_pass(progress=progress),
                                               lambda: B.final_pass(progress=progress))))
        else:
            maps = {"A": A.final_pass(progress=progress), "B": B.final_pass(progress=progress)}
        self.check_stop()
        apix = self.ps.apix
        io.write_mrc(os.path.join(self.out, names.OUT_HALF_A), maps["A"], apix)
        io.write_mrc(os.path.join(self.out, names.OUT_HALF_B), maps["B"], apix)
        avg = 0.5 * (maps["A"] + maps["B"])
        io.write_mrc(os.path.join(self.out, names.OUT_MAP), avg, apix)
        # the phase-randomisation's fixed seed: `abinitrefine fsc` on the half-maps gives the same curve
        gs = fsc.gold_standard_fsc(maps["A"], maps["B"], apix)
        report.write_fsc(self.out, gs, self.ps.box, apix)
        poses, map_poses = self.pose_tests(maps, gs)
        vd = verdict.convergence_verdict(gs, self.ps.box, apix, self.p.align_res_A, self.p.max_res_A,
                                         align_cc=self.alignments[-1]["score"] if self.alignments else None,
                                         poses=poses, map_poses=map_poses)
        self.say(vd["message"])
        out_ps, used, unused = outputs.write_particles(self.ps, (A, B), self.half, self.p, self.out, self.say)
        log = self.full_log()
        with outdir.atomic(os.path.join(self.out, names.OUT_LOG)) as tmp, open(tmp, "w") as f:
            json.dump({"iterations": log, "alignments": self.alignments}, f, indent=1)
        report.write_figures(self.out, maps["A"], maps["B"], out_ps, log)
        result = dict(resolution_A=float(gs["resolution"]), n_used=int(len(used)), n_unused=int(len(unused)),
                      n_half_A=int(np.sum(self.half[used] == 1)), n_half_B=int(np.sum(self.half[used] == 2)),
                      apix=float(apix), box=int(self.ps.box), iterations=int(A.iteration),
                      verdict=vd["verdict"], convergence=vd, starts=self.starts, params=asdict(self.p))
        if self.p.junk_classes:
            result["classes"] = self.classes
        with outdir.atomic(os.path.join(self.out, names.OUT_RESULT)) as tmp, open(tmp, "w") as f:  # last: the manifest
            json.dump(result, f, indent=1)
        self.stage = "done"
        if not self.p.keep_checkpoint and os.path.exists(self.ckpt):
            os.remove(self.ckpt)  # every output is written: nothing left to continue
        self.say(f"gold-standard resolution (FSC {names.FSC_GOLD}, corrected): {gs['resolution']:.2f} A; "
                 f"{len(used)} particles used, {len(unused)} unused; outputs in {self.out}")
        return result


FINAL_PROGRESS_SECONDS = 30.0  # the final pass says how far it got at most this often (and when a half ends)


def _eta(run) -> str:
    """Remaining SGD time, extrapolated from the cost of the iterations so far (later ones cost more)."""
    done = sum(e["seconds"] for e in run.log)
    if not run.log or done <= 0:
        return "?"
    per = sum(e["seconds"] for e in run.log[-10:]) / min(10, len(run.log))
    return _hms(2 * per * (run.n_iters - run.iteration))  # two halves


def _hms(seconds: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(seconds))


def run_job(particles, out_dir: str, params: JobParams, resume: bool = False, log=print,
            overwrite: bool = False) -> dict:
    """Run the whole job. ``particles`` is a STAR path or an :class:`io.ParticleSet`.

    Before any compute: parameters, particles (finite, not constant), the output directory (writable, space,
    no other job's outputs unless ``overwrite``) and its lock. SIGINT/SIGTERM end the job after a checkpoint
    by raising :class:`JobInterrupted`.
    """
    ps = io.read_star(particles) if isinstance(particles, (str, os.PathLike)) else particles
    n_use = inputs.check(particles, ps, out_dir, params, log)
    ckpt = os.path.join(out_dir, outdir.CHECKPOINT)
    if resume and not os.path.exists(ckpt):
        raise JobInputError(f"--continue: no checkpoint in {out_dir}; run without --continue to start")
    outdir.preflight(out_dir, ps.box, n_use, params.pad)
    with outdir.JobLock(out_dir, say=log):
        outdir.previous_outputs(out_dir, resume=resume, overwrite=overwrite, say=log)
        job = Job(ps, out_dir, params, log=log)
        if resume:
            job.load()
            log(f"continuing from checkpoint: iteration {job.runs['A'].iteration}, stage {job.stage}")
        with StopOnSignals(job):
            if job.stage in ("explore", "sgd"):  # competing random starts, then one per half
                job.run_sgd()
            return job.finish()
