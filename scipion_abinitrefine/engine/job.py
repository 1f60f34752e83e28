"""The Homogeneous Ab-Initio Refinement job (docs/design.rst): two gold-standard halves, each
reconstructed from its own random start by SGD, kept in one frame by low-resolution map alignment,
finished by per-half Fourier reconstruction and a gold-standard FSC.

Nothing crosses between the halves except the rigid transform (rotation, shift, hand) found by aligning
half B's map to half A's at or below ``align_res_A`` (default 20 A).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, fields

import numpy as np

from . import io, so3
from .sgd import SGDParams, SGDRun

OUTPUTS = ("particles.star", "unused.star", "half_map_A.mrc", "half_map_B.mrc", "map.mrc", "fsc.csv",
           "fsc.star", "fsc.png", "slices.png", "angdist.png", "log.json", "result.json")


# A half-map alignment that changes the hand or turns B by more than two base-grid steps (30 deg) is applied
# only when it beats leaving B where it is by this much NCC. Low-resolution maps of blobby particles fit
# in both hands almost equally well: on the demo phantom at SNR 0.01, after three alignments had agreed
# (rotations of 2-5 deg, same hand), the last one flipped half B at NCC 0.959 and the final half maps
# disagreed.
ALIGN_BIG_DEG = 30.0
ALIGN_MARGIN = 0.02


def choose_alignment(cands: list[tuple[str, float, float | None]], margin: float = ALIGN_MARGIN) -> int:
    """Index of the alignment to apply among (name, NCC at the alignment resolution, band FSC) candidates.

    Low-resolution maps of flat or blobby particles fit in both hands (and at a few rotations) almost
    equally well at 20 A; the halves' agreement just past the alignment resolution tells the right one
    apart. Candidates within ``margin`` NCC of the best are plausible; among them the one whose halves agree
    best in the band wins. Choosing among two or three discrete candidates this way is a 1-2 bit selection:
    it cannot manufacture agreement in the band (the expected maximum of 3 unrelated band FSCs is ~0.85
    sigma, under the verdict's 3 sigma). A candidate without a band FSC (None) makes the NCC decide.
    """
    best_ncc = max(c[1] for c in cands)
    plausible = [i for i, c in enumerate(cands) if c[1] >= best_ncc - margin]
    if any(cands[i][2] is None for i in plausible):
        return max(plausible, key=lambda i: cands[i][1])
    return max(plausible, key=lambda i: cands[i][2])


def alignment_is_significant(aln) -> bool:
    """Apply ``aln``? Small rotations in the same hand always; a hand change or a large rotation only
    when it beats the unmoved map by ``ALIGN_MARGIN``."""
    big = aln.flip or float(so3.geodesic_deg(np.asarray(aln.R), np.eye(3))) > ALIGN_BIG_DEG
    return not (big and aln.score < aln.identity_score + ALIGN_MARGIN)


class JobInputError(ValueError):
    """Bad parameters or input, reported before any compute."""


@dataclass
class JobParams(SGDParams):
    num_particles: int = 0  # 0 = all
    align_res_A: float = 20.0
    align_every: int = 50  # iterations between half-map alignments
    split_by_micrograph: bool = False
    backend: str = "cpu"
    checkpoint_minutes: float = 5.0
    # particles the final model explains no better than noise (log marginal likelihood ratio < 0) go to
    # the unused output instead of particles.star
    exclude_junk: bool = False

    def sgd_params(self) -> SGDParams:
        names = {f.name for f in fields(SGDParams)}
        return SGDParams(**{k: v for k, v in asdict(self).items() if k in names})


def validate(params: JobParams, ps) -> None:
    """Every check that can fail before hours of compute; messages name the parameter."""
    n_use = len(ps) if params.num_particles <= 0 else min(params.num_particles, len(ps))
    try:
        params.sgd_params().validate(ps.box, ps.apix, n_use)
    except ValueError as e:
        raise JobInputError(str(e)) from None
    if params.align_res_A < params.max_res_A:
        raise JobInputError(f"Half-map alignment resolution {params.align_res_A} A is finer than the maximum "
                            f"resolution {params.max_res_A} A: the halves would share high-resolution "
                            f"information; use a coarser alignment resolution (default 20 A)")
    if params.align_res_A < 2 * ps.apix:
        raise JobInputError(f"Half-map alignment resolution {params.align_res_A} A is beyond Nyquist")
    if n_use // 2 < params.final_minibatch:
        raise JobInputError(f"each half gets {n_use // 2} particles, fewer than the final minibatch size "
                            f"{params.final_minibatch}: lower the minibatch sizes or use more particles")


def split_halves(n: int, seed: int, micrographs=None) -> np.ndarray:
    """Deterministic random half-set ids (1|2); optionally keep each micrograph's particles together."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))
    if micrographs is None:
        half = np.ones(n, np.int64)
        half[rng.permutation(n)[: n // 2]] = 2
        return half
    names, inv = np.unique(np.asarray(micrographs), return_inverse=True)
    order = rng.permutation(len(names))
    counts = np.bincount(inv, minlength=len(names))
    half_of_mic = np.ones(len(names), np.int64)
    total = 0
    for m in order:  # greedy: fill half 2 up to n/2
        if total + counts[m] <= n / 2:
            half_of_mic[m] = 2
            total += counts[m]
    return half_of_mic[inv]


def choose_used(half: np.ndarray, num: int, seed: int) -> np.ndarray:
    """Boolean mask of the particles offered to the SGD: ``num`` in random order, split evenly per half."""
    n = len(half)
    if num <= 0 or num >= n:
        return np.ones(n, bool)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xC0FFEE]))
    used = np.zeros(n, bool)
    for h in (1, 2):
        ids = np.flatnonzero(half == h)
        used[rng.permutation(ids)[: min(len(ids), num // 2 + (num % 2 if h == 1 else 0))]] = True
    return used


class Job:
    def __init__(self, ps, out_dir: str, params: JobParams, log=print):
        self.ps = ps
        self.out = out_dir
        self.p = params
        self.say = log or (lambda *a, **k: None)
        os.makedirs(out_dir, exist_ok=True)
        self.ckpt = os.path.join(out_dir, "checkpoint.npz")
        self.half = split_halves(len(ps), params.seed, ps.micrograph if params.split_by_micrograph else None)
        self.used = choose_used(self.half, params.num_particles, params.seed)
        sp = params.sgd_params()
        self.runs = {}
        for k, (name, h) in enumerate((("A", 1), ("B", 2))):
            idx = np.flatnonzero(self.used & (self.half == h))
            # independent random starts: different seeds per half
            self.runs[name] = SGDRun(ps, idx, sp, backend=params.backend, name=name,
                                     rng_seed=int(np.random.SeedSequence([params.seed, k + 1]).generate_state(1)[0]))
        self.alignments = []
        self.stage = "sgd"

    # ------------------------------------------------------------------------------ checkpoint
    def save(self):
        st = {"params": np.frombuffer(json.dumps(asdict(self.p)).encode(), np.uint8),
              "stage": np.frombuffer(self.stage.encode(), np.uint8),
              "log": np.frombuffer(json.dumps(self.full_log()).encode(), np.uint8),
              "alignments": np.frombuffer(json.dumps(self.alignments).encode(), np.uint8)}
        for name, run in self.runs.items():
            for k, v in run.state_dict().items():
                st[f"{name}__{k}"] = np.asarray(v if v is not None else np.nan)
        tmp = self.ckpt + ".tmp.npz"
        np.savez(tmp, **st)
        os.replace(tmp, self.ckpt)  # atomic: a kill during the write keeps the previous checkpoint

    def load(self):
        with np.load(self.ckpt) as z:
            saved = json.loads(z["params"].tobytes().decode())
            if saved != json.loads(json.dumps(asdict(self.p))):
                diff = {k: (saved.get(k), v) for k, v in asdict(self.p).items() if saved.get(k) != v}
                raise JobInputError(f"--continue with different parameters than the checkpoint in {self.out}: "
                                    f"{diff} (saved, requested); rerun with the same parameters or a new --out")
            self.stage = z["stage"].tobytes().decode()
            self.alignments = json.loads(z["alignments"].tobytes().decode())
            log = json.loads(z["log"].tobytes().decode())
            for name, run in self.runs.items():
                run.load_state({k.split("__", 1)[1]: z[k] for k in z.files if k.startswith(name + "__")})
                run.log = [e for e in log if e.get("half") == name]

    def full_log(self):
        return sorted(self.runs["A"].log + self.runs["B"].log, key=lambda e: (e["iteration"], e["half"]))

    # ------------------------------------------------------------------------------ alignment
    def align_halves(self):
        from . import align, fsc, verdict

        A, B = self.runs["A"], self.runs["B"]
        t0 = time.time()
        va, vb = A.model_volume(), B.model_volume()
        aln = align.align_maps(va, vb, self.ps.apix, max_res_A=self.p.align_res_A, hands=True, seed=self.p.seed)
        band, _ = verdict.independent_band(self.ps.box, self.ps.apix, self.p.align_res_A,
                                           A.radius_at(max(A.iteration - 1, 0)))
        cands = [("unmoved", aln.identity_score, None), ("best", aln.score, aln)]
        if aln.other is not None:
            cands.append(("other hand", aln.other.score, aln.other))
        if band.any():  # equally good at the alignment resolution: the independent band decides
            band_fsc = [float(fsc.fsc_curve(va, vb if c is None else align.transform_map(vb, c))[band].mean())
                        for _, _, c in cands]
            pick = choose_alignment([(n, s, b) for (n, s, _), b in zip(cands, band_fsc)])
            rule = "agreement past the alignment resolution"
        else:  # no independent band yet: the NCC alone decides, large changes must be clear
            band_fsc = [None] * len(cands)
            pick = 1 if alignment_is_significant(aln) else 0
            rule = f"NCC margin {ALIGN_MARGIN:g} for hand changes and rotations > {ALIGN_BIG_DEG:g} deg"
        chosen = cands[pick][2]
        applied = chosen is not None
        if applied:
            B.apply_alignment(chosen, align.transform_map, align.transform_poses)
            aln = chosen
        angle = float(so3.geodesic_deg(np.asarray(aln.R), np.eye(3)))
        rec = dict(iteration=A.iteration, flip=bool(aln.flip), score=float(aln.score),
                   identity_score=float(aln.identity_score), applied=bool(applied), angle_deg=angle,
                   chosen=cands[pick][0], candidates={n: [float(s), b] for (n, s, _), b in zip(cands, band_fsc)},
                   shift_px=[float(x) for x in np.asarray(aln.shift)], seconds=time.time() - t0)
        self.alignments.append(rec)
        if applied:
            self.say(f"  aligned half B to A at {self.p.align_res_A:g} A ({cands[pick][0]}): rotation {angle:.1f} "
                     f"deg, flip={rec['flip']}, cc={rec['score']:.3f} (unmoved: {rec['identity_score']:.3f})")
        else:
            self.say(f"  half B kept in its frame (by {rule}): the best alignment (rotation {angle:.1f} deg, "
                     f"flip={rec['flip']}, cc={rec['score']:.3f}) against B unmoved (cc {rec['identity_score']:.3f})")

    # ------------------------------------------------------------------------------ main loop
    def run_sgd(self):
        A, B = self.runs["A"], self.runs["B"]
        last_ckpt = time.time()
        t_start = time.time()
        n_tot = max(A.n_iters, B.n_iters)
        while not (A.done and B.done):
            for run in (A, B):
                if not run.done:
                    e = run.step()
            it = A.iteration
            if it % 10 == 0 or A.done:
                el = time.time() - t_start
                self.say(f"iter {it:5d}/{n_tot}  res {e['resolution_A']:6.2f} A  minibatch {e['minibatch']:4d}  "
                         f"ESS A {A.log[-1]['ess']:7.1f} B {B.log[-1]['ess']:7.1f}  lr {e['lr']:.3f}  "
                         f"seen {A.seen.sum() + B.seen.sum()}  {el:7.1f} s  ETA {_eta(A, el):>8s}", flush=True)
            if self.p.align_every > 0 and it >= self.p.init_iters and it % self.p.align_every == 0:
                self.align_halves()
            if time.time() - last_ckpt > 60 * self.p.checkpoint_minutes:
                self.save()
                last_ckpt = time.time()
        self.align_halves()
        self.stage = "final"
        self.save()

    def finish(self) -> dict:
        from . import fsc, report, verdict

        A, B = self.runs["A"], self.runs["B"]
        self.say("final pass: poses of every seen particle against its half's final model")
        maps = {}
        for name, run in self.runs.items():
            maps[name] = run.final_pass(progress=None)
        apix = self.ps.apix
        io.write_mrc(os.path.join(self.out, "half_map_A.mrc"), maps["A"], apix)
        io.write_mrc(os.path.join(self.out, "half_map_B.mrc"), maps["B"], apix)
        avg = 0.5 * (maps["A"] + maps["B"])
        io.write_mrc(os.path.join(self.out, "map.mrc"), avg, apix)
        gs = fsc.gold_standard_fsc(maps["A"], maps["B"], apix, seed=self.p.seed)
        report.write_fsc(self.out, gs, self.ps.box, apix)
        vd = verdict.convergence_verdict(gs, self.ps.box, apix, self.p.align_res_A, self.p.max_res_A,
                                         align_cc=self.alignments[-1]["score"] if self.alignments else None)
        self.say(vd["message"])
        # particles: used = seen by the SGD; poses in RELION convention
        n = len(self.ps)
        rot = np.zeros(n)
        tilt = np.zeros(n)
        psi = np.zeros(n)
        ox = np.zeros(n)
        oy = np.zeros(n)
        seen = np.zeros(n, bool)
        loglik = np.full(n, np.nan)
        maxprob = np.full(n, np.nan)
        for run in (A, B):
            g = run.idx[run.seen]
            r_, t_, p_ = so3.matrix_to_euler(run.R[run.seen].astype(np.float64))
            rot[g], tilt[g], psi[g] = r_, t_, p_
            ox[g] = run.t[run.seen, 0] * apix
            oy[g] = run.t[run.seen, 1] * apix
            loglik[g] = run.loglik[run.seen]
            maxprob[g] = run.maxprob[run.seen]
            seen[g] = True
        if self.p.exclude_junk:
            junk = seen & (loglik < 0)
            self.say(f"{int(junk.sum())} particles explained no better than by noise go to unused.star")
            seen &= ~junk
        used = np.flatnonzero(seen)
        unused = np.flatnonzero(~seen)
        out_ps = self.ps.with_poses(rot, tilt, psi, ox, oy, half=self.half)._derive(loglik=loglik, maxprob=maxprob)
        out_ps = out_ps.subset(used)
        io.write_star(os.path.join(self.out, "particles.star"), out_ps)
        un = self.ps.subset(unused)
        un.half = None
        un.rot = un.tilt = un.psi = un.origin_x = un.origin_y = None
        io.write_star(os.path.join(self.out, "unused.star"), un)
        log = self.full_log()
        with open(os.path.join(self.out, "log.json"), "w") as f:
            json.dump({"iterations": log, "alignments": self.alignments}, f, indent=1)
        report.write_figures(self.out, maps["A"], maps["B"], out_ps, log)
        result = dict(resolution_A=float(gs["resolution"]), n_used=int(len(used)), n_unused=int(len(unused)),
                      n_half_A=int(np.sum(self.half[used] == 1)), n_half_B=int(np.sum(self.half[used] == 2)),
                      apix=float(apix), box=int(self.ps.box), iterations=int(A.iteration),
                      verdict=vd["verdict"], convergence=vd, params=asdict(self.p))
        with open(os.path.join(self.out, "result.json"), "w") as f:
            json.dump(result, f, indent=1)
        self.stage = "done"
        self.say(f"gold-standard resolution (FSC 0.143, corrected): {gs['resolution']:.2f} A; "
                 f"{len(used)} particles used, {len(unused)} unused; outputs in {self.out}")
        return result


def _eta(run, elapsed: float) -> str:
    """Remaining SGD time, extrapolated from the cost of the iterations so far (later ones cost more)."""
    done = sum(e["seconds"] for e in run.log)
    if not run.log or done <= 0:
        return "?"
    per = sum(e["seconds"] for e in run.log[-10:]) / min(10, len(run.log))
    left = 2 * per * (run.n_iters - run.iteration)  # two halves
    return time.strftime("%H:%M:%S", time.gmtime(left))


def run_job(particles, out_dir: str, params: JobParams, resume: bool = False, log=print) -> dict:
    """Run the whole job. ``particles`` is a STAR path or an :class:`io.ParticleSet`."""
    ps = io.read_star(particles) if isinstance(particles, (str, os.PathLike)) else particles
    validate(params, ps)
    if hasattr(ps, "check_finite"):
        ps.check_finite()
    job = Job(ps, out_dir, params, log=log)
    if resume:
        if not os.path.exists(job.ckpt):
            raise JobInputError(f"--continue: no checkpoint in {out_dir}; run without --continue to start")
        job.load()
        log(f"continuing from checkpoint: iteration {job.runs['A'].iteration}, stage {job.stage}")
    elif os.path.exists(job.ckpt):
        raise JobInputError(f"{out_dir} already holds a job checkpoint: use --continue to resume it, or a new "
                            f"--out directory (nothing was overwritten)")
    if job.stage == "sgd":
        job.run_sgd()
    return job.finish()
