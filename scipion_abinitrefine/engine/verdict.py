"""Did the two independent halves find the same structure? (the job's convergence verdict)

The halves share nothing but the rigid transform found by aligning B's map to A's at or below the
alignment resolution. Beyond it their FSC is evidence that no alignment can manufacture: two halves that
settled on different structures (or on noise) agree there only as much as two unrelated maps do. The
verdict compares the corrected gold-standard FSC in the band just past the alignment resolution (out to
1.5x finer) with what unrelated maps give: per shell, 3 sigma of the FSC of independent maps, sigma =
1/sqrt(number of independent Fourier voxels in the shell under the mask). Reported beside it: the
halves' correlation at the alignment resolution after alignment (informative only: two unrelated blobs
of the same size also correlate there).

Maps can agree without the poses being determined: two halves that settled on the same featureless shape
(a bright compact lobe whose projections barely depend on the view, measured on realistic low-SNR data with
junk) agree past the alignment resolution as well as right maps do. The second test asks the poses:
images of each half searched again against the other half's final model (:func:`halves.cross_pose_agreement`)
must land on their own poses for at least ``MIN_POSE_AGREEMENT`` of them, and their posterior there (T = 1)
must be concentrated: a median 3D ESS of at most ``MAX_POSE_SPREAD`` of the orientations searched. (Agreement
alone is not enough: two nearly identical maps of a ball give an image the same arg-max pose although every
pose fits it equally well.) Between ``MIN_POSE_AGREEMENT`` and ``CONFIDENT_POSE_AGREEMENT`` the verdict is
"uncertain": right maps measured 0.37-1, maps that settled on a shared wrong shape 0.05-0.32, the job
started from the true map on data too poor for it 0.10-0.26 (docs/design.rst). Images whose two poses differ by a
turn about one axis that many disagreeing images share (:func:`halves.pose_axis`: an elongated, flat or
pseudo-symmetric particle whose turn about that axis the data do not fix) count as agreeing up to that turn.

The SGD's models can hide a shared wrong shape: on realistic data with junk (FSC to the truth 18 A, poses
wrong) two halves kept smooth models that gave 32% of the images the same pose, over the line, where their
half-maps gave 24% (right runs: 41-58%). So the pose test is also run against the output half-maps (each
shrunk per shell by the halves' FSC to its signal, :meth:`job.Job.pose_tests`), and either test under
``CONFIDENT_POSE_AGREEMENT`` makes the run "uncertain". The posterior spread is asked of the SGD's models
only, also when judging the half-maps' pose axis: a half-map's reconstruction noise sharpens the images'
posteriors on itself (a featureless ball: 2% of the orientations against the SGD models' 69%).

Both tests are symmetric in the halves: one half that failed beside a right one can leave the maps agreeing
past the alignment resolution (partly) and a third of the images on the same poses. The third test asks
which map the images prefer (:func:`halves.map_preference`: the log evidence of the same images of both
halves under each half-map): right pairs show no preference beyond the noise; a clear one
(``MAP_PREFERENCE_Z``, ``MAP_PREFERENCE_MIN``) makes a converged run "uncertain" and names the worse half, and
in a failed run names the better half-map as the candidate to check.
"""
from __future__ import annotations

import numpy as np

from . import fourier, names

CONVERGED, FAILED, UNDETERMINED, UNCERTAIN = "converged", "failed", "undetermined", "uncertain"
BAND_FACTOR = 1.5  # the independent band: align_res / BAND_FACTOR .. align_res
MIN_AGREEMENT = names.FSC_GOLD  # and never less than the gold-standard threshold
# Fraction of images whose poses from the two halves' models agree (``halves.CROSS_TOLERANCE_DEG``) below
# which the maps' agreement is not trusted (random poses: ~0.1%; see docs/design.rst for the measurements)
MIN_POSE_AGREEMENT = 0.10
# ... and below which it is "uncertain" (a partial or shared wrong structure cannot be told from poor data).
# Measured over 27 runs (docs/results.rst), counting turns about the particle's own axis:
# wrong maps up to 32% from the SGD models and 30% from the half-maps (a real protein, 6msm, both halves on
# the same elongated blob: 14% + 16% about its long axis at 5.5x chance), right maps from 43% / 37%; a
# globule whose map matched the truth with 99% of its poses wrong, 38% / 31%. The line sits in the gap.
CONFIDENT_POSE_AGREEMENT = 0.34
# Median 3D ESS (fraction of the orientations searched) above which the poses are not determined: 5% of
# SO(3) is a ball of radius ~57 deg around the best pose (a determined structure at 20-10 A: < 1%)
MAX_POSE_SPREAD = 0.05
# The disagreeing images' relative rotations turn about one axis (:func:`halves.pose_axis`) far more often
# than uniformly spread axes do: views of an elongated, flat or pseudo-symmetric particle whose turn about
# that axis the data do not fix. Counted as agreement "up to that turn" from AXIS_MIN_FACTOR x chance, and
# only when at least MIN_POSE_AGREEMENT of the images agree outright. Measured (docs/results.rst): right maps
# of a ring of domains 9x (5.5-7x after the fact) and of elongated particles 7-9.5x; failed or data-limited
# runs 2.4-2.8x, and 4.1x for a compact globule at SNR 0.005 (FSC to the truth 13 A, poses wrong), which a
# line at 4x would have counted; uniformly random rotations <= 1.5x (the densest of 800 cones).
AXIS_MIN_FACTOR = 5.0
AXIS_MIN_IMAGES = 20
# ... and only while the pose posterior is concentrated: "the same pose up to a turn" means the poses are
# determined but for that turn. Measured median 3D ESS: right maps of elongated / flat particles 1.0-2.3% of
# the orientations; failed runs of an elongated particle and a ring at SNR 0.005 5.6% / 20% with axes at 5.9x /
# 10.5x chance (the elongated one: 13% + 17% agreeing, which the axis alone would have called converged)
AXIS_MAX_POSE_SPREAD = 0.03
# One half worse than the other (:func:`halves.map_preference`): the images of both halves are explained
# better by one half's map than by the other's, by more than MAP_PREFERENCE_Z standard errors and more than
# MAP_PREFERENCE_MIN of the images' mean evidence. A half can fail beside a right one; where it still agrees
# with it past the alignment resolution (a partly wrong half), nothing else in the verdict shows it. Measured
# (SNR 0.01, 20% junk, 1,000 images per half; docs/results.rst): four runs with two right halves (one pair
# 10.9 / 8.6 A to the truth) |z| <= 0.7 and <= 0.3% of the evidence; a half that failed (19 A, poses wrong)
# beside a right one z = 9, 6.3%; a right half-map mixed 60:40 with itself turned 60 deg z = 5.4, 6.9%
# (70:30: z = 1.0, not seen). The floor: measured with the SGD's models, a right pair of a pseudo-symmetric
# real structure (19hc, halves 12.1 / 11.6 A, their poses split between mates) gave z = 5.5 at 0.36%; with
# the half-maps (shrunk by the FSC, as the job now asks) z = 1.7 at 0.17%, and the one-start failure above
# z = 15 at 4.9% (in the job; the ball-park of the after-the-fact 9 and 6.3%).
MAP_PREFERENCE_Z = 4.0
MAP_PREFERENCE_MIN = 0.02


def noise_fsc_sigma(mask: np.ndarray) -> np.ndarray:
    """Per-shell standard deviation of the FSC of two unrelated maps under ``mask``.

    An FSC over n independent complex voxels of unrelated maps has sigma ~ 1/sqrt(n); the shell's
    Hermitian half holds the independent ones. A mask of diameter d in a box D correlates Fourier voxels
    over ~D/d voxels in each direction, so a shell's surface keeps a fraction (d/D)^2 of its voxels
    independent; d/D from the mask's volume fraction f (its mean square) as for a sphere, (6 f / pi)^(1/3).
    """
    D = mask.shape[0]
    sh = np.rint(fourier.radial_index(mask.shape)).astype(np.int64).ravel()
    counts = np.bincount(sh, minlength=D // 2 + 1)[: D // 2 + 1].astype(np.float64)
    f = max(float(np.mean(np.asarray(mask, np.float64) ** 2)), 1.0 / mask.size)
    n_ind = np.maximum(0.5 * counts * min(1.0, (6.0 * f / np.pi) ** (2.0 / 3.0)), 1.0)
    return 1.0 / np.sqrt(n_ind)


def independent_band(box: int, apix: float, align_res_A: float, limit_radius: float) -> tuple[np.ndarray, float]:
    """Shells (bool mask over 0..box//2) just past the alignment resolution, out to BAND_FACTOR x finer and
    never past ``limit_radius`` (index units: the resolution the maps reach), and the band's outer radius."""
    lo_k = box * apix / align_res_A  # shell of the alignment resolution
    hi_k = min(BAND_FACTOR * lo_k, limit_radius, box // 2)
    shells = np.arange(box // 2 + 1)
    return (shells > lo_k + 0.5) & (shells <= hi_k + 1e-9), hi_k


def particle_axis(poses: dict | None, spread: float | None = None) -> dict | None:
    """The pose axis when it is the particle's own (see ``AXIS_MIN_FACTOR``), else None. ``spread``: the
    posterior spread to judge by (default the test's own; the half-maps' test takes the SGD models')."""
    ax = (poses or {}).get("axis")
    if not ax:
        return None
    spread = poses["ess_fraction"] if spread is None else spread
    ok = (poses["fraction"] >= MIN_POSE_AGREEMENT and ax["off_fraction"] >= AXIS_MIN_FACTOR * ax["chance"]
          and ax["fraction"] * poses["images"] >= AXIS_MIN_IMAGES and spread <= AXIS_MAX_POSE_SPREAD)
    return ax if ok else None


def agreeing_fraction(poses: dict, spread: float | None = None) -> float:
    """Images whose two poses agree, or differ by a turn about the particle's own axis."""
    ax = particle_axis(poses, spread)
    return poses["fraction"] + (ax["fraction"] if ax else 0.0)


SGD_MODELS, HALF_MAPS = "both halves' SGD models", "both half-maps"


def _same_pose_txt(poses: dict, source: str = SGD_MODELS, spread: float | None = None) -> str:
    txt = (f"{100 * poses['fraction']:.0f}% of {poses['images']} images get the same pose (within "
           f"{poses['tolerance_deg']:g} deg) from {source}")
    ax = particle_axis(poses, spread)
    if ax:
        factor = ax["off_fraction"] / ax["chance"]
        txt += (f"; {100 * ax['fraction']:.0f}% more differ by a turn about one axis ({factor:.0f}x what "
                f"chance gives): views whose turn about that axis the data do not fix, as for an "
                f"elongated, flat or pseudo-symmetric particle ({100 * agreeing_fraction(poses, spread):.0f}% agree "
                f"up to that turn)")
    return txt


def pose_problems(poses: dict | None) -> list[str]:
    """Why the poses of :func:`halves.cross_pose_agreement` are not determined (empty: they are)."""
    if poses is None or not poses["images"]:
        return []
    out = []
    if poses["fraction"] < MIN_POSE_AGREEMENT:  # outright: a pose axis counts only above this line
        out.append(f"only {_same_pose_txt(poses)} (random poses: {100 * poses['chance']:.1f}%; needed: "
                   f"{100 * MIN_POSE_AGREEMENT:.0f}%)")
    if poses["ess_fraction"] > MAX_POSE_SPREAD:
        out.append(f"an image's pose posterior spans {100 * poses['ess_fraction']:.0f}% of all orientations "
                   f"(median; a determined structure: < {100 * MAX_POSE_SPREAD:.0f}%)")
    return out


def worse_half(poses: dict | None) -> dict | None:
    """The half whose map explains the images clearly worse than the other's (see ``MAP_PREFERENCE_Z``):
    a dict 'worse', 'better', 'deficit' (nat per image), 'z', 'relative' (of the mean evidence); None if
    neither is."""
    mp = (poses or {}).get("map_preference")
    if not mp or not mp["images"] or not np.isfinite(mp["se"]) or mp["se"] <= 0 or mp["evidence"] <= 0:
        return None
    d = mp["a_minus_b"]
    z, rel = abs(d) / mp["se"], abs(d) / mp["evidence"]
    if z < MAP_PREFERENCE_Z or rel < MAP_PREFERENCE_MIN:
        return None
    worse, better = ("B", "A") if d > 0 else ("A", "B")
    return dict(worse=worse, better=better, deficit=abs(d), z=z, relative=rel)


def _worse_half_txt(w: dict, images: int) -> str:
    return (f"half {w['worse']}'s map explains the images of both halves worse than half {w['better']}'s "
            f"(by {w['deficit']:.2f} nat per image, {100 * w['relative']:.0f}% of their mean evidence, "
            f"{w['z']:.0f} standard errors over {images} images)")


def convergence_verdict(gs: dict, box: int, apix: float, align_res_A: float, max_res_A: float,
                        align_cc: float | None = None, poses: dict | None = None,
                        map_poses: dict | None = None) -> dict:
    """Verdict from the gold-standard FSC (:func:`fsc.gold_standard_fsc` output).

    Returns a dict: 'verdict' (converged | uncertain | failed | undetermined), 'agreement_beyond_alignment' (mean
    corrected FSC in the band), 'noise_level' (3 sigma of unrelated maps there), 'band_A' (the band's
    resolution limits), 'align_cc', 'pose_agreement' (``poses``: :func:`halves.cross_pose_agreement` on the
    SGD's models, or None when not measured), 'map_pose_agreement' (``map_poses``: the same on the half-maps,
    with the map preference), 'worse_half' (:func:`worse_half`) and 'message' (one sentence for the log and
    summaries).
    """
    corr = np.asarray(gs["fsc_corrected"], np.float64)
    band, hi_k = independent_band(box, apix, align_res_A, box * apix / max_res_A)
    out = dict(align_cc=None if align_cc is None else float(align_cc),
               band_A=[float(align_res_A), float(box * apix / max(hi_k, 1e-9))], pose_agreement=poses,
               map_pose_agreement=map_poses)
    if not band.any():
        out.update(verdict=UNDETERMINED, agreement_beyond_alignment=None, noise_level=None,
                   message=(f"convergence cannot be judged: the maximum resolution ({max_res_A:g} A) leaves no "
                            f"Fourier shell past the half-map alignment resolution ({align_res_A:g} A), where "
                            f"the halves are independent; use a finer maximum resolution"))
        return out
    sig = noise_fsc_sigma(gs["mask"])
    agree = float(corr[band].mean())
    noise = float(3.0 * sig[band].mean() / np.sqrt(band.sum()))  # 3 sigma of the band's mean
    thr = max(MIN_AGREEMENT, noise)
    ok = agree > thr
    band_txt = f"{out['band_A'][0]:.1f}-{out['band_A'][1]:.1f} A"
    why = pose_problems(poses)
    spread = poses["ess_fraction"] if poses else None  # the SGD models' (see Job.pose_tests)
    # (poses, source, spread) of each pose test whose images agree too little for a confident verdict
    weak = [(p, src, sp) for p, src, sp in ((poses, SGD_MODELS, None), (map_poses, HALF_MAPS, spread))
            if p is not None and p["images"] and agreeing_fraction(p, sp) < CONFIDENT_POSE_AGREEMENT]
    worse = worse_half(map_poses if map_poses is not None else poses)
    out.update(verdict=FAILED if not ok or why else UNCERTAIN if weak or worse else CONVERGED,
               agreement_beyond_alignment=agree, noise_level=noise, worse_half=worse)
    pose_txt = ("" if poses is None else f"; {_same_pose_txt(poses)}, their pose posterior spans "
                f"{100 * poses['ess_fraction']:.1f}% of the orientations")
    if map_poses is not None:
        pose_txt += f"; {_same_pose_txt(map_poses, HALF_MAPS, spread)}"
    worse_txt = (_worse_half_txt(worse, (map_poses or poses)["map_preference"]["images"]) if worse else "")
    uncertain = (f"WARNING: UNCERTAIN: the two halves' maps agree past the alignment resolution (mean corrected "
                 f"FSC {agree:.2f} at {band_txt}), but ")
    if ok and not why and weak:
        also = "".join(f" and only {100 * agreeing_fraction(p, sp):.0f}% from {src}" for p, src, sp in weak[1:])
        out["message"] = (f"{uncertain}only {_same_pose_txt(*weak[0])}{also} "
                          f"(converged runs: >= {100 * CONFIDENT_POSE_AGREEMENT:.0f}%)"
                          f"{'; ' + worse_txt if worse else ''}. The "
                          f"map may be a partial structure, or a shape both halves share without the data "
                          f"supporting it: check it (2D class averages against its projections, more particles, "
                          f"more random starts) before refining it further")
    elif ok and not why and worse:
        out["message"] = (f"{uncertain}{worse_txt}: half {worse['worse']} may have settled on a partly wrong "
                          f"structure, which the averaged map and the gold-standard FSC mix in. Look at the two "
                          f"half-maps; re-run with another seed or more random starts, or take half "
                          f"{worse['better']}'s map as the reference of a refinement")
    elif ok and not why:
        out["message"] = (f"CONVERGED: the two independent halves agree past the alignment resolution "
                          f"(mean corrected FSC {agree:.2f} at {band_txt}; unrelated maps give < {thr:.2f})"
                          f"{pose_txt}")
    elif ok:
        out["message"] = (f"WARNING: NOT CONVERGED: the two halves' maps agree past the alignment resolution "
                          f"(mean corrected FSC {agree:.2f} at {band_txt}), but the poses are not determined: "
                          f"{'; '.join(why)}. Both halves settled on a shape whose projections barely depend on "
                          f"the view: do not trust this map or its poses. Try more particles, more random "
                          f"starts, a finer initial resolution, or clean the data (junk, CTF)")
    else:
        out["message"] = (f"WARNING: NOT CONVERGED: the two independent halves do not agree past the alignment "
                          f"resolution (mean corrected FSC {agree:.2f} at {band_txt}, no more than unrelated "
                          f"maps give: < {thr:.2f}). The halves found different structures: do not trust "
                          f"this map. Try more particles, a finer initial resolution, or check the data "
                          f"(junk, CTF, pixel size)")
        if worse:  # which half failed, when the images say so: the other may still be right
            better_file = names.OUT_HALF_A if worse["better"] == "A" else names.OUT_HALF_B
            out["message"] += (f". Of the two, {worse_txt}: "
                               f"half {worse['better']}'s map ({better_file}) is the better candidate, not a "
                               f"validated one")
    return out
