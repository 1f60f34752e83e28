"""The two gold-standard halves: the random split of the particles, and keeping the halves in one frame by
aligning half B's map to half A's at (never beyond) the alignment resolution."""
from __future__ import annotations

import time

import numpy as np

from . import outliers, so3

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


def align_halves(A, B, box: int, apix: float, align_res_A: float, seed: int) -> tuple[dict, str]:
    """Align run B's model to run A's at ``align_res_A`` and apply it to B when the rule says so.

    Candidates: B unmoved, the best alignment, the best in the other hand. Where the independent band past
    the alignment resolution exists, the plausible candidate (within ``ALIGN_MARGIN`` NCC of the best) whose
    halves agree best there wins (:func:`choose_alignment`); before that, large changes must be clear
    (:func:`alignment_is_significant`). Returns (the record for log.json, the log line).
    """
    from . import align, fsc, verdict

    t0 = time.time()
    va, vb = A.model_volume(), B.model_volume()
    aln = align.align_maps(va, vb, apix, max_res_A=align_res_A, hands=True, seed=seed)
    band, _ = verdict.independent_band(box, apix, align_res_A, A.last_radius())
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
    unmoved = float(aln.identity_score)  # scored once, on the best alignment (the other hand's has none)
    if applied:
        B.apply_alignment(chosen, align.transform_map, align.transform_poses)
        aln = chosen
    angle = float(so3.geodesic_deg(np.asarray(aln.R), np.eye(3)))
    rec = dict(iteration=A.iteration, flip=bool(aln.flip), score=float(aln.score),
               identity_score=unmoved, applied=bool(applied), angle_deg=angle,
               chosen=cands[pick][0], candidates={n: [float(s), b] for (n, s, _), b in zip(cands, band_fsc)},
               shift_px=[float(x) for x in np.asarray(aln.shift)], seconds=time.time() - t0)
    if applied:
        msg = (f"  aligned half B to A at {align_res_A:g} A ({cands[pick][0]}): rotation {angle:.1f} "
               f"deg, flip={rec['flip']}, cc={rec['score']:.3f} (unmoved: {rec['identity_score']:.3f})")
    else:
        msg = (f"  half B kept in its frame (by {rule}): the best alignment (rotation {angle:.1f} deg, "
               f"flip={rec['flip']}, cc={rec['score']:.3f}) against B unmoved (cc {rec['identity_score']:.3f})")
    return rec, msg


# Images per half whose poses are searched again against the other half's model (and against their own:
# :func:`map_preference`). 1,000 rather than 400: a half that failed beside a right one (SNR 0.01, 20% junk)
# stood 5.6 standard errors from "no preference" with 400, 9 with 1,000. The job searches them three times
# (the SGD models' test, then the half-maps' with the own-map search; ``Job.pose_tests``).
CROSS_IMAGES = 1000
# Two poses of one image "agree" within this angle (deg): coarser than the final search's precision at the
# resolutions this job reaches, far finer than chance (random rotations fall this close with p ~ 0.1%).
CROSS_TOLERANCE_DEG = 15.0


def chance_within(deg: float) -> float:
    """Probability that two independent uniformly random rotations lie within ``deg`` of each other."""
    a = np.radians(deg)
    return float((a - np.sin(a)) / np.pi)


# A "pose axis": the disagreeing images' relative rotations turn about one axis (within this cone, deg)
AXIS_CONE_DEG = 15.0


def pose_axis(Q: np.ndarray, off: np.ndarray, cone_deg: float = AXIS_CONE_DEG) -> dict | None:
    """The axis most of the disagreeing images' relative rotations turn about.

    ``Q`` (n, 3, 3): per image ``R_own^T R_best`` (map frame); ``off``: images whose two poses disagree. A right
    map of an elongated, flat or pseudo-symmetric particle leaves a turn about one of the particle's axes
    undetermined for many views: their relative rotations, whatever the angle, turn about that axis. Poses
    decided by noise give relative rotations with axes spread uniformly over the sphere (Haar measure), of
    which a fraction ``1 - cos(cone)`` falls in any cone. Returns None when no image disagrees, else a dict:
    'axis', 'fraction' (of all ``len(Q)`` images: disagreeing and turned about the axis), 'off_fraction' (of the
    disagreeing images), 'chance' (the latter for uniform axes), 'cone_deg'.
    """
    idx = np.flatnonzero(off)
    if len(idx) == 0:
        return None
    ax = so3.matrix_to_axes(Q[idx])
    cos_cone = np.cos(np.radians(cone_deg))
    near = np.abs(ax @ ax.T) >= cos_cone
    # refine: the principal direction of the axes in the densest cone, then count around it
    members = ax[near[int(np.argmax(near.sum(1)))]]
    a = np.linalg.eigh(members.T @ members)[1][:, -1]
    within = np.abs(ax @ a) >= cos_cone
    return dict(axis=a.tolist(), fraction=float(within.sum() / len(Q)), off_fraction=float(within.mean()),
                chance=float(1.0 - cos_cone), cone_deg=cone_deg)


def map_preference(ev_a: np.ndarray, ev_b: np.ndarray) -> dict:
    """Which half's map explains the images better: per image, the log evidence against A's map and against
    B's, over images of both halves in equal numbers (each half's own images favour its own map a little,
    which the two halves cancel). Returns 'images', 'a_minus_b' (mean, nat per image), 'se' (its standard
    error), 'evidence' (the mean of the two maps' mean evidence: the scale the difference is read against)."""
    d = np.asarray(ev_a, np.float64) - np.asarray(ev_b, np.float64)
    n = len(d)
    return dict(images=int(n), a_minus_b=float(d.mean()) if n else float("nan"),
                se=float(d.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
                evidence=float(0.5 * (np.mean(ev_a) + np.mean(ev_b))) if n else float("nan"))


def closest_mate(Rx: np.ndarray, Ro: np.ndarray, sym: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image, the angle (deg) from pose Rx (n, 3, 3) to the closest symmetry mate Ro S of pose Ro, and
    the relative rotation (Ro S)^T Rx."""
    dk = np.array([so3.geodesic_deg(Rx, Ro @ S) for S in sym])
    Sk = sym[dk.argmin(0)]
    return dk.min(0), np.einsum("nba,nbc->nac", Ro @ Sk, Rx)


def cross_pose_agreement(A, B, n_images: int = CROSS_IMAGES, seed: int = 0, details: bool = False,
                         own_evidence: bool = True, check=None) -> dict:
    """Do the halves' models (the SGD's last, or the half-maps) give the same images the same poses?

    For up to ``n_images`` seen images of each half (outliers left out): the best pose against the *other* half's model
    (the halves share one frame after the last alignment) against the image's own final pose, as a
    geodesic angle (the closest symmetry mate). A right structure determines the poses of most images to
    the resolution's precision, whichever half's model is used; two halves that settled on a shared blob
    (a shape whose projections barely depend on the view) agree as maps but not on poses, because each
    image's pose is then decided by the maps' independent noise.

    The same images are also searched against their own half's model, with the same points and noise model,
    which gives each image's log evidence under both maps (:func:`map_preference`): a half that failed, or
    partly failed, beside a right one explains the images of both halves worse, even its own.
    ``own_evidence=False`` skips that second search (and 'map_preference').

    Returns a dict: 'fraction' (of images within ``CROSS_TOLERANCE_DEG``), 'median_deg', 'chance' (the
    fraction random poses give, counting symmetry mates), 'images', 'tolerance_deg', 'ess_fraction' (the
    median 3D ESS of those searches over the number of rotations searched), 'axis' (:func:`pose_axis`),
    'per_half' (per half's images: 'images', 'fraction', mean 'evidence_own' / 'evidence_other') and, when
    both halves have seen images, 'map_preference' (:func:`map_preference`).
    """
    from . import fourier
    from .reconstruct import image_points

    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xC405]))
    angles, ess, rel = [], [], []
    per_half = {}
    sym = np.asarray(A.sym, np.float64)
    ev_by_map = {"A": [], "B": []}  # per map: the evidence of the sampled images of both halves
    for name, other_name, own, other in (("A", "B", A, B), ("B", "A", B, A)):
        # the particles, not the outliers (engine/outliers.py): a bright contaminant's evidence would decide
        # which map the images prefer
        seen = np.flatnonzero(own.seen & (own.outlier_w >= outliers.OUTLIER_BELOW))
        if not len(seen):
            continue
        sel = np.sort(rng.choice(seen, min(n_images, len(seen)), replace=False))
        r = min(own.r_max, other.r_max)
        for run in (own, other):
            run.set_working_radius(run.r_max)
        m = fourier.n_points_within(other.kx, other.ky, r)
        kx, ky = other.kx[:m], other.ky[:m]
        G, G_own = other.be.asarray(other.G), own.be.asarray(own.G)
        agree, ev = [], {name: [], other_name: []}
        s2 = own.noise_per_point(m)
        for a in range(0, len(sel), 128):
            if check is not None:  # e.g. the job's signal test: a stop within seconds
                check()
            s = sel[a:a + 128]
            X, C = image_points(own.data, own.idx[s], own.rp, kx, ky)
            res = other.searcher.search(G, X, C, s2, kx, ky, r, n_keep=1, top_k=own.p.final_top_k)
            # the same images, points and noise against their own half's map: a paired comparison of the maps
            if own_evidence:
                res_own = own.searcher.search(G_own, X, C, s2, kx, ky, r, n_keep=1, top_k=own.p.final_top_k)
                ev[name].append(np.asarray(res_own.evidence, np.float64))
            ev[other_name].append(np.asarray(res.evidence, np.float64))
            d, q = closest_mate(np.asarray(res.R[:, 0], np.float64), own.R[s].astype(np.float64), sym)
            angles.append(d)
            agree.append(d < CROSS_TOLERANCE_DEG)
            rel.append(q)
            ess.append(np.asarray(res.ess, np.float64) / len(other.searcher.base))
        per_half[name] = dict(images=int(len(sel)), fraction=float(np.mean(np.concatenate(agree))),
                              evidence_other=float(np.mean(np.concatenate(ev[other_name]))))
        if own_evidence:
            for k in ev:
                ev_by_map[k].append(np.concatenate(ev[k]))
            per_half[name]["evidence_own"] = float(np.mean(ev_by_map[name][-1]))
    ang = np.concatenate(angles) if angles else np.zeros(0)
    Q = np.concatenate(rel) if rel else np.zeros((0, 3, 3))
    out = dict(axis=pose_axis(Q, ang >= CROSS_TOLERANCE_DEG),
               fraction=float(np.mean(ang < CROSS_TOLERANCE_DEG)) if len(ang) else float("nan"),
               median_deg=float(np.median(ang)) if len(ang) else float("nan"),
               chance=chance_within(CROSS_TOLERANCE_DEG) * len(A.sym), images=int(len(ang)),
               tolerance_deg=CROSS_TOLERANCE_DEG,
               ess_fraction=float(np.median(np.concatenate(ess))) if ess else float("nan"), per_half=per_half)
    if own_evidence and len(per_half) == 2:
        out["map_preference"] = map_preference(*(np.concatenate(ev_by_map[k]) for k in "AB"))
    if details:  # per image: the relative rotations and the angles (after-the-fact analyses)
        out.update(Q=Q, angles_deg=ang)
    return out
