"""The job's parameters, in one table: each dataclass field carries its default, its command-line flag, its
Scipion form name, label, help, section and expert level, and its bounds.

The command line (``cli.py``), the Scipion form and the arguments it gives the job
(``protocols/protocol_abinitio_refine.py``), and every check (:mod:`bounds`, :func:`data_errors`) are built
from these fields; nothing else lists them. Light on purpose (no numpy): the Scipion form imports it.
Names follow CryoSPARC's Ab-Initio Reconstruction / Homogeneous Ab-Initio Refinement (docs/design.rst).
"""
from __future__ import annotations

from dataclasses import MISSING, Field, dataclass, field, fields

from . import schedule

SECTIONS = ("Input", "Ab-initio", "Gold standard")
# form lines: several fields on one row of the Scipion form (label, help)
LINES = {
    "minibatch": ("Minibatch size", "Particles per SGD iteration, before and after the switch iteration "
                                    "(CryoSPARC: 90 / 300; small particles may need 300 / 1000)."),
    "iterations": ("Number of iterations", "Initial iterations are run at the initial resolution (annealing); "
                                           "final iterations at the maximum resolution, after the resolution "
                                           "ramp."),
}
MIN_PER_HALF = 20  # fewer particles in a half give no meaningful FSC: refused
FEW_PER_HALF = 1000  # fewer: a warning (resolution and the verdict are weakly determined)
MIN_INIT_RADIUS = 1.5  # Fourier radius (px) of the initial resolution: coarser leaves no pose information
MIN_MASK_PX = 4  # a window narrower than this many pixels holds no particle
MAX_ITERATIONS = 1_000_000  # per half: more is a typo (days to years of compute)
LONG_SCHEDULE = 10  # a schedule this many times the default's iterations gets a warning


def opt(default, label: str, *, flag: str | None = None, form: str | None = None, help: str = "",
        section: str | None = None, advanced: bool = False, line: str | None = None, form_label: str | None = None,
        lo: float | None = None, hi: float | None = None, low_open: bool = False, hint: str = "",
        example=None) -> Field:
    """A parameter: ``flag`` on the command line, ``form`` in the Scipion form (in ``section``, at the
    Advanced level if ``advanced``, on the form line ``line`` as ``form_label``), bounds [lo, hi] (lo excluded
    if ``low_open``; None = unbounded) with ``hint`` saying what a good value looks like."""
    assert form is None or section in SECTIONS, (label, section)
    return field(default=default, metadata=dict(
        label=label, flag=flag, form=form, help=help, section=section, advanced=advanced, line=line,
        form_label=form_label or label, lo=lo, hi=hi, low_open=low_open, hint=hint, example=example))


@dataclass
class SGDParams:
    """Parameters of one half's SGD run (``sgd.SGDRun``)."""

    max_res_A: float = opt(
        6.0, "Maximum resolution (A)", flag="--max-res", form="maxRes", section="Ab-initio", lo=0, low_open=True,
        hint="a resolution in A, e.g. 6",
        help="Finest resolution the SGD reaches (CryoSPARC Ab-Initio Reconstruction: 12 A; Homogeneous Ab-Initio "
             "Refinement pushes it to about 3 A with enough good particles). Must not be finer than Nyquist "
             "(2 x pixel size); use the wizard for Nyquist.")
    init_res_A: float = opt(
        35.0, "Initial resolution (A)", flag="--init-res", form="initRes", section="Ab-initio", lo=0, low_open=True,
        hint="a resolution in A, e.g. 35", help="Resolution of the first iterations (annealing from random starts).")
    # the pose likelihood's lower frequency limit (search.PoseSearch.band): small particles carry their pose
    # information at high frequencies, while their low-resolution outline (a ball) fits many poses alike
    min_align_res_A: float = opt(
        0.0, "Minimum resolution used for alignment (A)", flag="--min-align-res", form="minAlignRes",
        section="Ab-initio", lo=0, hint="0 = all frequencies; else a resolution in A coarser than the initial one, "
        "e.g. 25",
        help="Frequencies coarser than this resolution are left out of the pose likelihood (the search, the "
             "pose polish, the per-particle scores and the choice between random starts); the maps still use "
             "them. 0 = all frequencies. Experimental, for small proteins whose low-resolution outline fits many "
             "orientations alike: on simulated ~80 A particles a 25 A limit lost the structure, so keep 0 unless "
             "the low resolutions are known to mislead.")
    init_minibatch: int = opt(
        90, "Initial minibatch size", flag="--init-minibatch", form="initMinibatch", section="Ab-initio",
        line="minibatch", form_label="initial", lo=1, hint="images per iteration, e.g. 90",
        help="Particles per SGD iteration before the switch iteration.")
    final_minibatch: int = opt(
        300, "Final minibatch size", flag="--final-minibatch", form="finalMinibatch", section="Ab-initio",
        line="minibatch", form_label="final", lo=1, hint="images per iteration, e.g. 300",
        help="Particles per SGD iteration from the switch iteration on.")
    minibatch_switch_iter: int = opt(
        300, "Minibatch switch iteration", flag="--minibatch-switch", form="minibatchSwitch", section="Ab-initio",
        advanced=True, lo=0, hint="e.g. 300",
        help="Iteration at which the minibatch size goes from the initial to the final size.")
    init_iters: int = opt(
        200, "Number of initial iterations", flag="--init-iters", form="initIters", section="Ab-initio",
        line="iterations", form_label="initial", lo=0, hint="e.g. 200",
        help="Iterations at the initial resolution (annealing from random starts).")
    final_iters: int = opt(
        300, "Number of final iterations", flag="--final-iters", form="finalIters", section="Ab-initio",
        line="iterations", form_label="final", lo=0, hint="e.g. 300",
        help="Iterations at the maximum resolution, after the resolution ramp.")
    radius_step: float = opt(
        0.04, "Fourier radius step", flag="--fourier-radius-step", form="radiusStep", section="Ab-initio", lo=0,
        hi=10, low_open=True, hint="pixels per iteration, e.g. 0.04",
        help="Growth of the Fourier radius (in pixels of the full box) per iteration between the initial and the "
             "maximum resolution. Smaller = longer, safer ramp.")
    init_lr: float = opt(
        0.4, "Initial learning rate", flag="--init-lr", form="initLR", section="Ab-initio", advanced=True, lo=0,
        hi=1, low_open=True, hint="a fraction in (0, 1], e.g. 0.4", help="SGD step size at the start (CryoSPARC: 0.4).")
    lr_duration: int = opt(
        100, "Initial learning rate duration", flag="--lr-duration", form="lrDuration", section="Ab-initio",
        advanced=True, lo=0, hint="iterations, e.g. 100",
        help="Iterations at the initial learning rate before it decays (as 1/t, to the final learning rate).")
    final_lr: float = opt(0.05, "Final learning rate", lo=0, hi=1, low_open=True,
                          hint="a fraction in (0, 1], e.g. 0.05")
    target_ess_fraction: float = opt(
        0.011, "Target 3D ESS fraction", flag="--target-ess", form="targetESS", section="Ab-initio", advanced=True,
        lo=0, hi=1, hint="a fraction in [0, 1], e.g. 0.011",
        help="Fraction of the poses that should carry posterior mass early on; sets the initial noise scale "
             "(annealing). CryoSPARC default: 0.011.")
    # poses per image drawn from the coarse posterior outside the beam (search.PoseSearch.search)
    n_samples: int = opt(
        32, "Pose samples per image", flag="--pose-samples", form="poseSamples", section="Ab-initio", advanced=True,
        lo=0, hint="0 = best poses only, e.g. 32",
        help="Poses drawn per image from the coarse posterior, beyond the best ones, so that the update "
             "marginalises over poses while the posterior is broad (low SNR, low resolution). 0 = best poses only "
             "(fails on low-SNR data).")
    # weight each image by the posterior probability that the model, not noise alone, explains it
    # (sigmoid of its log marginal likelihood ratio): junk that the model cannot explain steers it less
    junk_weighting: bool = opt(
        True, "Down-weight junk?", flag="--no-junk-weighting", form="junkWeighting", section="Ab-initio",
        advanced=True,
        help="Weight each image by the probability that the model, rather than noise alone, explains it, so that "
             "junk steers the model less (command line: --no-junk-weighting turns it off).")
    # heterogeneous ab initio inside each half (engine/classes.py): extra models that absorb junk
    junk_classes: int = opt(
        0, "Number of junk classes", flag="--junk-classes", form="junkClasses", section="Ab-initio",
        advanced=True, lo=0, hi=8, hint="0 = none, e.g. 2",
        help="Extra classes per half-set, each from its own random start, that compete with the particle for "
             "every image (heterogeneous ab initio inside each half): ice, contaminants, other objects and "
             "aggregates can go to a junk class instead of bending the particle's map. The class that holds "
             "the most images is the particle's; particles whose most probable class is a junk class go to "
             "the unused particles with rlnClassNumber (2 and up) and the class probability "
             "(rlnMaxValueProbDistribution). Each class costs about one more search per image. 0 = one class "
             "(the homogeneous job).")
    # weight down images with far more unexplained power at their best pose than their batch (engine/outliers.py):
    # a contaminant brighter than the particle outweighs every particle in the likelihood and bends the model
    outlier_weighting: bool = opt(
        True, "Down-weight outliers?", flag="--no-outlier-weighting", form="outlierWeighting", section="Ab-initio",
        advanced=True,
        help="Weight down images that leave far more power unexplained at their best pose than the other images "
             "of their batch (bright contaminants, aggregates, ice crystals), so that they do not steer the "
             "model or the choice between random starts (command line: --no-outlier-weighting turns it off).")
    mask_diameter_A: float = opt(
        0.0, "Window/mask diameter (A)", flag="--mask-diameter", form="maskDiameter", section="Ab-initio", lo=0,
        hint="0 = automatic",
        help="Diameter of the soft spherical window applied to the models (A). 0 = automatic (85% of the box). "
             "The wizard proposes it from the box size and the pixel size.")
    max_shift_frac: float = opt(0.1, "Maximum shift (fraction of the box)", lo=0, hi=0.5, hint="e.g. 0.1")
    top_k: int = opt(8, "Poses kept per image between search levels", flag="--top-k", lo=1, hint="e.g. 8",
                     help="Poses kept per image between the levels of the coarse-to-fine search.")
    # The final poses are what users take downstream: a wider beam there is cheap (one pass) and, with the
    # true map at SNR 0.05 / box 64 / 5 A, brings the median angular error from 3.8 (8) to 2.9 deg (32).
    final_top_k: int = opt(32, "Poses kept per image in the final pass", flag="--final-top-k", lo=1, hint="e.g. 32",
                           help="Poses kept per image between search levels in the final pose assignment.")
    n_backproject: int = opt(4, "Poses back-projected per image", lo=1, hint="e.g. 4")
    # polish each particle's best final pose continuously (rotation + sub-pixel origin, engine/refine.py):
    # the search ends on its grid, and downstream local refinement starts from these poses
    final_refine: bool = opt(True, "Polish the final poses")
    noise_prior_images: float = opt(50.0, "Noise model prior weight (images)", lo=0, hint="e.g. 50")
    pad: int = opt(2, "Padding factor", lo=1, hi=4, hint="2")
    symmetry: str = opt(
        "C1", "Symmetry", flag="--sym", form="symmetry", section="Input", example="D7",
        help="Point group of the particle, as RELION names it: C1 (none), Cn, Dn, T, O or I (I1-I4; I = I2), "
             "with RELION's axes (Cn about z, the Dn 2-fold about x), so that the maps and poses are what RELION "
             "expects with the same symmetry. Every image updates all the symmetry-related views of the model. "
             "C1 is the safe choice for a structure not known yet: a wrong symmetry makes a wrong map.")
    seed: int = opt(
        0, "Random seed", flag="--seed", form="seed", section="Gold standard", advanced=True, lo=0,
        hint="a non-negative integer",
        help="Seed of the half-set split, the particle order and the random initial models. The same seed and "
             "inputs give the same result.")

    def validate(self, box: int, apix: float, n_particles: int):
        """Raise ValueError naming the parameter for settings that cannot work on these data."""
        errors = data_errors(self, box, apix, n_particles)
        if errors:
            raise ValueError("; ".join(errors))


@dataclass
class JobParams(SGDParams):
    """The whole job: both halves' SGD runs, the half-map alignment, the outputs."""

    num_particles: int = opt(
        0, "Num particles to use", flag="--num-particles", form="numParticles", section="Input", lo=0,
        hint="0 uses all particles",
        help="Number of particles, taken at random and split evenly between the two half-sets, to use for the "
             "reconstruction (0 = all). The others are returned as unused particles.")
    # random starts per half: they run the initial iterations and the start of the resolution ramp; the better
    # half of them by how well their model explains the half's images (mean log marginal likelihood ratio on
    # a fixed subset) goes on at the halving radius; from the selection radius on a start goes out once it is
    # clearly behind the best, and the best one is kept at the last radius at the latest (starts.start_radii)
    n_starts: int = opt(
        8, "Random starts per half", flag="--starts", form="numStarts", section="Ab-initio", advanced=True, lo=1,
        hint="e.g. 8; 1 = one start, no choice",
        help="Each half-set runs this many random initial models through the initial iterations and the start of "
             "the resolution ramp: once the particle spans 5 resolution elements (and at least 1.15 x the initial "
             "Fourier radius) the better half of them goes on; from 6 elements (at least 1.3 x) a start goes out "
             "once its model explains the half's images clearly worse than the best one's (likelihood against "
             "noise alone, on the same images, 3 paired standard errors), and at 9 elements (at least 1.6 x) the "
             "best one is kept whatever the margin. On low-SNR data "
             "some random starts stay stuck at low resolution where others converge. "
             "Each extra start costs those iterations once more. 1 = one start.")
    # particles the final model explains no better than noise (log marginal likelihood ratio < 0), and the
    # final pass's outliers (outlier weight < 1/2), go to the unused output instead of particles.star
    exclude_junk: bool = opt(
        False, "Junk to the unused particles?", flag="--exclude-junk", form="excludeJunk", section="Ab-initio",
        help="Particles that the final model explains no better than noise (negative rlnLogLikeliContribution), "
             "and outliers that leave far more power unexplained than the rest (bright contaminants), go to the "
             "unused particles instead of the output.")
    align_res_A: float = opt(
        20.0, "Half-map alignment resolution (A)", flag="--align-res", form="alignRes", section="Gold standard",
        lo=0, low_open=True, hint="e.g. 20",
        help="The two half-maps are aligned to each other using only information up to this resolution (default "
             "20 A), so that they stay independent beyond it. Must be coarser than the maximum resolution.")
    align_every: int = opt(
        50, "Iterations between half-map alignments", flag="--align-every", form="alignEvery",
        section="Gold standard", advanced=True, lo=0, hint="0 = only at the end, e.g. 50",
        help="How often half B's model is aligned to half A's (rotation, shift, hand) during the SGD, from the end "
             "of the initial iterations on; the halves are also aligned once at the end. 0 = only at the end.")
    split_by_micrograph: bool = opt(
        False, "Keep micrographs in one half-set?", flag="--split-by-micrograph", form="splitByMicrograph",
        section="Gold standard",
        help="Put all particles of a micrograph into the same half-set, so that particles that share a micrograph "
             "(and its noise, drift and CTF errors) never sit in both halves.")
    # the compute device: the command line's --backend and the form's GPU settings (not a form field here)
    backend: str = opt("cpu", "Backend")
    checkpoint_minutes: float = opt(5.0, "Minutes between checkpoints", flag="--checkpoint-minutes", lo=0,
                                    hint="e.g. 5", help="Minutes between checkpoints (a killed run continues "
                                                        "from the last one with --continue).")
    # the checkpoint (two working-box models and curvatures, poses) is removed once result.json is written
    keep_checkpoint: bool = opt(False, "Keep the checkpoint", flag="--keep-checkpoint",
                                help="Keep checkpoint.npz after a successful run (removed by default: it is the "
                                     "largest file).")

    def sgd_params(self) -> SGDParams:
        names = {f.name for f in fields(SGDParams)}
        return SGDParams(**{f.name: getattr(self, f.name) for f in fields(self) if f.name in names})


CHOICES = {"backend": ("auto", "cpu", "cuda")}


def table(cls=JobParams) -> list[tuple[Field, dict]]:
    """(field, metadata) of every parameter of ``cls``, in declaration order."""
    return [(f, f.metadata) for f in fields(cls)]


def kind(f: Field) -> type:
    """The field's Python type (annotations are strings under postponed evaluation)."""
    return {"int": int, "float": float, "bool": bool, "str": str}.get(f.type, f.type)


def default(f: Field):
    return f.default if f.default is not MISSING else f.default_factory()


def cli_options() -> list[tuple[str, Field]]:
    """(flag, field) of every parameter the command line sets."""
    return [(m["flag"], f) for f, m in table() if m["flag"]]


def form_fields() -> list[tuple[str, Field]]:
    """(form name, field) of every parameter the Scipion form sets, in form order."""
    return [(m["form"], f) for s in SECTIONS for f, m in table() if m["form"] and m["section"] == s]


def bool_flag_value(f: Field) -> bool:
    """The value a boolean field takes when its flag is given (the flag flips the default)."""
    return not default(f)


def n_used(num_particles: int, n_total: int) -> int:
    """How many of ``n_total`` particles the job uses (``num_particles`` <= 0: all)."""
    return n_total if num_particles <= 0 else min(num_particles, n_total)


def data_errors(p, box: int, apix: float, n_particles: int) -> list[str]:
    """The checks that need the data (pixel size, box, particle count), one message each naming the field.

    ``p`` is an SGDParams or JobParams; ``n_particles`` the number the job will use (both halves).
    """
    errors = []
    if n_particles // 2 < MIN_PER_HALF:
        errors.append(f"{n_particles} particles give {n_particles // 2} per half-set: a gold-standard FSC needs at "
                      f"least {MIN_PER_HALF} per half (thousands for a meaningful one); add particles")
    nyq = 2.0 * apix
    if p.max_res_A < nyq - 1e-6:
        errors.append(f"Maximum resolution (max_res_A) = {p.max_res_A:g} A is finer than Nyquist ({nyq:.2f} A at "
                      f"{apix:g} A/px): set it to {nyq:.2f} A or coarser")
    if p.init_res_A < p.max_res_A:
        errors.append(f"Initial resolution (init_res_A) = {p.init_res_A:g} A must be coarser than (>=) the maximum "
                      f"resolution {p.max_res_A:g} A: raise the initial resolution")
    if p.min_align_res_A and p.min_align_res_A <= p.init_res_A:
        errors.append(f"Minimum resolution used for alignment (min_align_res_A) = {p.min_align_res_A:g} A must be "
                      f"coarser than the initial resolution {p.init_res_A:g} A (the first iterations would align "
                      "on nothing): raise it (e.g. 2 x the initial resolution) or use 0 (all frequencies)")
    if n_particles < 2 * p.init_minibatch:
        errors.append(f"{n_particles} particles give {n_particles // 2} per half-set, fewer than the initial "
                      f"minibatch size (init_minibatch) = {p.init_minibatch}: lower it or use more particles")
    if p.init_res_A > box * apix / MIN_INIT_RADIUS:
        errors.append(f"Initial resolution (init_res_A) = {p.init_res_A:g} A is coarser than the box allows "
                      f"({box * apix / MIN_INIT_RADIUS:.0f} A for {box} px at {apix:g} A/px): use a finer one, "
                      "e.g. 35 A")
    elif (n_it := schedule.iterations(p, box, apix)) > MAX_ITERATIONS:
        errors.append(f"the schedule has {n_it:.3g} iterations per half (the initial iterations (init_iters), the "
                      "ramp (radius_step), the final iterations (final_iters)): at most "
                      f"{MAX_ITERATIONS:,}; the default schedule runs about "
                      f"{schedule.iterations(type(p)(), box, apix):,}")
    if 0 < p.mask_diameter_A < MIN_MASK_PX * apix:
        errors.append(f"Window/mask diameter (mask_diameter_A) = {p.mask_diameter_A:g} A is under {MIN_MASK_PX} "
                      f"pixels ({apix:g} A/px): it holds no particle; give the particle's diameter in A, or 0 "
                      "(automatic)")
    if n_particles < 2 * p.final_minibatch:
        errors.append(f"{n_particles} particles give {n_particles // 2} per half-set, fewer than the final minibatch "
                      f"size (final_minibatch) = {p.final_minibatch}: lower the minibatch sizes (initial and final) "
                      "or use more particles")
    if box % 2:
        errors.append(f"box size {box} px is odd: re-extract (or crop/pad) the particles with an even box")
    if p.mask_diameter_A > box * apix:
        errors.append(f"Window/mask diameter (mask_diameter_A) = {p.mask_diameter_A:g} A is larger than the box "
                      f"({box * apix:g} A): use 0 (automatic) or the wizard")
    align = getattr(p, "align_res_A", None)
    if align is not None:
        if align < p.max_res_A:
            errors.append(f"Half-map alignment resolution (align_res_A) = {align:g} A is finer than the maximum "
                          f"resolution {p.max_res_A:g} A: the halves would share high-resolution information; use "
                          "a coarser alignment resolution (default 20 A)")
        elif align < nyq:
            errors.append(f"Half-map alignment resolution (align_res_A) = {align:g} A is beyond Nyquist "
                          f"({nyq:.2f} A)")
    return errors


def data_warnings(p, box: int, apix: float, n_total: int) -> list[str]:
    """Settings that are legal but surely unintended on these data, one message each (the job logs them as
    warnings before the compute). ``n_total``: the particles in the input."""
    warnings = []
    if getattr(p, "num_particles", 0) > n_total:
        warnings.append(f"Num particles to use (num_particles) = {p.num_particles} but the input has {n_total}: "
                        f"all {n_total} are used")
    if box * apix / p.init_res_A >= MIN_INIT_RADIUS:
        n, n0 = schedule.iterations(p, box, apix), schedule.iterations(type(p)(), box, apix)
        if n > LONG_SCHEDULE * n0:
            warnings.append(f"the schedule has {n:,} iterations per half, {n / n0:.0f} x the default's {n0:,} "
                            "(init_iters, radius_step, final_iters): this job may take days")
    if p.target_ess_fraction == 0:
        warnings.append("Target 3D ESS fraction (target_ess_fraction) = 0: no annealing; random starts usually "
                        "need it (default 0.011)")
    return warnings
