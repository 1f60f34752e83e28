"""``abinitrefine`` command line: demo | simulate | run | fsc. No Scipion needed."""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from .engine import params


def _help(f) -> str:
    """An option's help from the parameter table, ending with its default (a flag: what it turns on or off)."""
    text = (f.metadata["help"] or f.metadata["label"]).rstrip(".")
    d = params.default(f)
    if params.kind(f) is bool:
        shown = "on" if d else "off"
    elif isinstance(d, (int, float)):
        shown = f"{d:g}" + (" A" if f.name.endswith("_A") else "")
    else:
        shown = str(d)
    return f"{text}. Default: {shown}".replace("%", "%%")


# the job's options: flags, help and defaults from the parameter table (engine/params.py)
RUN_OPTIONS = [(flag, f.name, params.kind(f), _help(f)) for flag, f in params.cli_options()]

DEMO = dict(n=2000, box=64, apix=2.0, snr=0.05)
DEMO_PARAMS = dict(max_res_A=6.0, init_iters=40, final_iters=40, radius_step=0.15, init_minibatch=90,
                   final_minibatch=300, minibatch_switch_iter=60, lr_duration=30, align_every=40)


def _simulate(out, n, box, apix, snr, seed, map_path=None, log=print, shape="demo", phantom_seed=None,
              mass_kda=None, symmetry="C1", pdb_path=None, **data_kw):
    """Simulate a data set into ``out``; ``data_kw`` go to :func:`simulate.simulate_particles` (B-factor,
    noise colour, scale spread, defocus range, junk fraction). Ground truth: poses in the STAR file, the
    map in truth.mrc, per-particle truth (junk flags and kinds, scales) in truth.csv."""
    from .engine import io, simulate

    os.makedirs(out, exist_ok=True)
    if map_path:
        try:
            vol, apix_map = io.read_mrc(map_path)
        except Exception as e:  # mrcfile raises ValueError/OSError/... for files that are not MRC maps
            raise SystemExit(f"error: --map {map_path}: not a readable MRC map ({e})") from None
        if vol.ndim != 3 or vol.shape != (vol.shape[0],) * 3 or vol.shape[0] % 2:
            raise SystemExit(f"{map_path}: need a cubic map with an even box, got {vol.shape}")
        apix = apix_map if apix_map > 0 else apix
        box = vol.shape[0]
    elif pdb_path:
        try:
            vol = simulate.map_from_pdb(pdb_path, box, apix)
        except (OSError, ValueError) as e:
            raise SystemExit(f"error: --pdb: {e}") from None
    else:
        pseed = phantom_seed if phantom_seed is not None else (7 if shape == "demo" else seed)
        vol = simulate.make_phantom(box, apix, seed=pseed, shape=shape, mass_kda=mass_kda, symmetry=symmetry)
    images, truth = simulate.simulate_particles(vol, n, apix, snr=snr, seed=seed, **data_kw)
    stack = os.path.join(out, "particles.mrcs")
    io.write_stack(stack, images, apix)
    io.write_mrc(os.path.join(out, "truth.mrc"), vol, apix)
    ps = io.ParticleSet(image_names=np.array([f"{i + 1:06d}@particles.mrcs" for i in range(n)]),
                        stack_paths=np.array([os.path.abspath(stack)] * n),
                        stack_index=np.arange(n, dtype=np.int64), apix=apix, box=box, ctf=truth["ctf"],
                        rot=truth["rot"], tilt=truth["tilt"], psi=truth["psi"],
                        origin_x=truth["origin_x"], origin_y=truth["origin_y"],
                        micrograph=np.array([f"mic{i // 100:04d}.mrc" for i in range(n)]))
    io.write_star(os.path.join(out, "particles.star"), ps)
    with open(os.path.join(out, "truth.csv"), "w") as f:
        f.write("index,image_name,junk,junk_kind,scale\n")
        for i in range(n):
            f.write(f"{i},{ps.image_names[i]},{int(truth['junk'][i])},{truth['junk_kind'][i]},"
                    f"{truth['scale'][i]:.4f}\n")
    n_junk = int(truth["junk"].sum())
    log(f"simulated {n} particles (box {box}, {apix} A/px, SNR {snr}, {n_junk} junk) -> {out}/particles.star "
        f"(ground-truth poses inside), truth map {out}/truth.mrc, per-particle truth {out}/truth.csv")
    return os.path.join(out, "particles.star")


def _params_from(args):
    from .engine.job import JobParams

    p = JobParams()
    for _, field, _, _ in RUN_OPTIONS:
        v = getattr(args, field, None)
        if v is not None:
            setattr(p, field, v)
    p.backend = args.backend
    return p


def job_params_from_args(argv) -> "JobParams":  # noqa: F821 (imported lazily)
    """The JobParams a ``run`` command line gives (how the Scipion form's values reach the engine)."""
    args = build_parser().parse_args(["run", "--particles", "-", "--out", "-"] + [str(a) for a in argv])
    return _params_from(args)


def _setup_compute(args):
    threads = getattr(args, "threads", None)
    if threads is not None and threads < 0:
        raise SystemExit(f"error: --threads {threads}: a number of CPU threads >= 0 (0 = all)")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if threads is not None and threads > cpus:
        print(f"WARNING: --threads {threads} is more than the {cpus} CPUs this process may use: using {cpus}",
              file=sys.stderr)
        threads = cpus
    if threads is not None:
        from .engine import threads as engine_threads

        engine_threads.limit(threads)
    if getattr(args, "gpu", None) is not None and args.backend != "cpu":
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", str(args.gpu))


def cmd_run(args):
    from .engine.io import ParticleInputError
    from .engine.job import JobInputError, JobInterrupted, run_job
    from .engine.outdir import OutputError

    _setup_compute(args)
    try:
        res = run_job(args.particles, args.out, _params_from(args), resume=args.continue_,
                      overwrite=args.overwrite)
    except (ParticleInputError, JobInputError, OutputError) as e:
        msg = str(e)
        for opt, field, _, _ in RUN_OPTIONS:  # the engine names fields; a command-line user knows the flags
            msg = msg.replace(f"({field})", f"({opt})")
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except JobInterrupted as e:
        print(str(e), file=sys.stderr)
        return 128 + e.signum  # 130 for SIGINT, 143 for SIGTERM, as a shell reports them
    print(json.dumps({k: v for k, v in res.items() if k != "params"}))
    return 0


def simulate_errors(args) -> list[str]:
    """``simulate``'s arguments that cannot work, one message each (checked before anything is written)."""
    errors = []
    if args.n < 1:
        errors.append(f"--n {args.n}: the number of particles to simulate, >= 1")
    if args.map is None and (args.box < 16 or args.box % 2):
        errors.append(f"--box {args.box}: an even box size in pixels, >= 16")
    if not args.apix > 0 or not np.isfinite(args.apix):
        errors.append(f"--apix {args.apix}: a pixel size in A/px > 0")
    if not args.snr >= 0 or not np.isfinite(args.snr):
        errors.append(f"--snr {args.snr}: a signal-to-noise ratio >= 0 (e.g. 0.05; 0: noise alone)")
    if not 0 <= args.bfactor < 1e4:
        errors.append(f"--bfactor {args.bfactor}: in [0, 10000) A^2")
    if not 0 <= args.scale_spread < 1:
        errors.append(f"--scale-spread {args.scale_spread}: a fraction in [0, 1)")
    for flag, path in (("--map", args.map), ("--pdb", args.pdb)):
        if path is not None and not os.path.isfile(path):
            errors.append(f"{flag} {path}: no such file")
    return errors


def cmd_simulate(args):
    from .engine.symmetry import SymmetryError, normalise

    errors = simulate_errors(args)
    if errors:
        print(f"error: {'; '.join(errors)}", file=sys.stderr)
        return 2

    try:
        normalise(args.sym)
    except SymmetryError as e:
        print(f"error: --sym: {e}", file=sys.stderr)
        return 2
    if not 0 <= args.junk < 1:
        print(f"error: --junk {args.junk}: a fraction in [0, 1)", file=sys.stderr)
        return 2
    if args.defocus[0] <= 0 or args.defocus[1] < args.defocus[0]:
        print(f"error: --defocus {args.defocus}: MIN MAX in micrometres, 0 < MIN <= MAX", file=sys.stderr)
        return 2
    if args.map and args.pdb:
        print("error: --map and --pdb: give one of them", file=sys.stderr)
        return 2
    _simulate(args.out, args.n, args.box, args.apix, args.snr, args.seed, args.map, pdb_path=args.pdb,
              shape=args.shape, phantom_seed=args.phantom_seed, mass_kda=args.mass_kda, symmetry=args.sym,
              bfactor=args.bfactor, noise=args.noise, scale_spread=args.scale_spread,
              defocus_range_um=tuple(args.defocus), junk_fraction=args.junk)
    return 0


def cmd_demo(args):
    from .engine.job import JobParams, run_job

    _setup_compute(args)
    data = os.path.join(args.out, "data")
    star = _simulate(data, args.n, DEMO["box"], DEMO["apix"], args.snr, 0)
    p = JobParams(**DEMO_PARAMS, backend=args.backend)
    print("running homogeneous ab-initio refinement on the demo set (CPU on 2 cores: ~5 min)")
    resume = args.continue_ and os.path.exists(os.path.join(args.out, "job", "checkpoint.npz"))
    # the demo regenerates its data: a rerun replaces its previous job unless continuing it
    res = run_job(star, os.path.join(args.out, "job"), p, resume=resume, overwrite=not resume)
    # compare with the ground truth, which a real data set does not have
    from .engine import align, fsc, io

    truth, apix = io.read_mrc(os.path.join(data, "truth.mrc"))
    avg, _ = io.read_mrc(os.path.join(args.out, "job", "map.mrc"))
    aln = align.align_maps(truth, avg, apix, max_res_A=15.0, hands=True)
    avg_t = align.transform_map(avg, aln)
    curve = fsc.fsc_curve(avg_t, truth, mask=fsc.soft_auto_mask(truth, apix))
    r05 = fsc.resolution_at(curve, truth.shape[0], apix, 0.5)
    print(f"demo: gold-standard {res['resolution_A']:.2f} A ({res['verdict']}); FSC(average map, truth) = 0.5 at "
          f"{r05:.2f} A; hand {'flipped' if aln.flip else 'correct'} relative to the truth")
    return 0


def _read_map(path):
    """A 3D cubic MRC map or a one-line error."""
    from .engine import io

    if not os.path.isfile(path):
        raise SystemExit(f"error: {path}: no such file")
    try:
        vol, apix = io.read_mrc(path)
    except Exception as e:  # mrcfile raises ValueError/OSError/... for non-MRC files
        raise SystemExit(f"error: {path}: not a readable MRC map ({e})") from None
    if vol.ndim != 3 or len(set(vol.shape)) != 1:
        raise SystemExit(f"error: {path}: need a cubic 3D map, got shape {vol.shape}")
    bad = int((~np.isfinite(vol)).sum())
    if bad:
        raise SystemExit(f"error: {path}: {bad} voxels are NaN or infinite: an FSC of it means nothing; check how "
                         "the map was made")
    if float(vol.max()) == float(vol.min()):
        raise SystemExit(f"error: {path}: the map is constant ({float(vol.min()):g} everywhere): it holds no "
                         "structure to compare")
    return vol, apix


def cmd_fsc(args):
    from .engine import fsc

    a, apix_a = _read_map(args.map_a)
    b, apix_b = _read_map(args.map_b)
    if a.shape != b.shape:
        print(f"error: {args.map_a} {a.shape} and {args.map_b} {b.shape} differ in size", file=sys.stderr)
        return 2
    if args.apix is not None:
        if not args.apix > 0:
            print(f"error: --apix {args.apix}: a pixel size in A/px > 0", file=sys.stderr)
            return 2
        apix = args.apix
    else:
        for path, v in ((args.map_a, apix_a), (args.map_b, apix_b)):
            if not (v and v > 0 and np.isfinite(v)):
                print(f"error: {path} has no pixel size in its header: give it with --apix", file=sys.stderr)
                return 2
        if abs(apix_a - apix_b) > 1e-3 * apix_a:
            print(f"error: pixel sizes differ: {args.map_a} {apix_a:g} A/px, {args.map_b} {apix_b:g} A/px; "
                  "give the right one with --apix", file=sys.stderr)
            return 2
        apix = apix_a
    gs = fsc.gold_standard_fsc(a, b, apix)  # the job uses the same fixed seed: the curve of its result.json
    if args.out:
        from .engine import report
        from .engine.outdir import OutputError

        try:
            os.makedirs(args.out, exist_ok=True)
            report.write_fsc(args.out, gs, a.shape[0], apix)
        except (OSError, OutputError) as e:
            print(f"error: cannot write the FSC files to {args.out}: {e}", file=sys.stderr)
            return 2
    print(f"FSC 0.143 (corrected): {gs['resolution']:.2f} A")
    return 0


def build_parser():
    ap = argparse.ArgumentParser(prog="abinitrefine", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--backend", default="auto", choices=params.CHOICES["backend"])
    common.add_argument("--threads", type=int, default=0, metavar="N", help="CPU threads (0 = all). Default: 0")
    common.add_argument("--gpu", default=None, help="GPU id (CUDA_VISIBLE_DEVICES). Default: the first visible")

    r = sub.add_parser("run", parents=[common], help="run the job on a RELION STAR file")
    r.add_argument("--particles", required=True, help="RELION STAR (3.0 or 3.1) with CTF parameters")
    r.add_argument("--out", required=True, help="output directory")
    r.add_argument("--continue", dest="continue_", action="store_true", help="resume from the checkpoint")
    r.add_argument("--overwrite", action="store_true",
                   help="replace another job's outputs in --out (refused otherwise)")
    for opt, field, typ, hlp in RUN_OPTIONS:
        if typ is bool:  # the flag flips the default (e.g. --no-junk-weighting)
            r.add_argument(opt, dest=field, action="store_const", const=not getattr(params.JobParams, field),
                           default=None, help=hlp)
        else:  # resolutions in A, counts, fractions
            metavar = "A" if field.endswith("_A") else "N" if typ is int else "X" if typ is float else None
            r.add_argument(opt, dest=field, type=typ, default=None, help=hlp, metavar=metavar)
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("simulate", help="simulate particles from the demo phantom or an MRC map")
    s.add_argument("--out", required=True)
    s.add_argument("--n", type=int, default=2000)
    s.add_argument("--box", type=int, default=64)
    s.add_argument("--apix", type=float, default=2.0)
    s.add_argument("--snr", type=float, default=0.05)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--map", default=None, help="MRC map to project instead of the built-in phantom")
    s.add_argument("--pdb", default=None,
                   help="atomic model (PDB format, .gz allowed) to render at --box/--apix and project instead")
    s.add_argument("--sym", default="C1", help="the phantom's point group (RELION's names: C1, Cn, Dn, T, O, I)")
    s.add_argument("--shape", default="demo", choices=["demo", "compact", "elongated", "flat"],
                   help="phantom family (demo: the embedded demo map)")
    s.add_argument("--phantom-seed", type=int, default=None, help="draws the phantom within its family")
    s.add_argument("--mass-kda", type=float, default=None, help="phantom size by mass (default: 60%% of the box)")
    s.add_argument("--bfactor", type=float, default=0.0, help="B-factor envelope (A^2), real data: 50-150")
    s.add_argument("--noise", default="white", choices=["white", "coloured"], help="noise spectrum")
    s.add_argument("--scale-spread", type=float, default=0.0, help="per-particle amplitude scale 1 +- this")
    s.add_argument("--defocus", type=float, nargs=2, default=[0.8, 2.5], metavar=("MIN", "MAX"),
                   help="defocus range (um)")
    s.add_argument("--junk", type=float, default=0.0,
                   help="fraction of junk: empty ice, off-centre particles, another object, aggregates")
    s.set_defaults(func=cmd_simulate)

    d = sub.add_parser("demo", parents=[common], help="simulate the demo set and run the job on it")
    d.add_argument("--out", default="demo_out")
    d.add_argument("--n", type=int, default=DEMO["n"])
    d.add_argument("--snr", type=float, default=DEMO["snr"])
    d.add_argument("--continue", dest="continue_", action="store_true")
    d.set_defaults(func=cmd_demo)

    f = sub.add_parser("fsc", help="gold-standard FSC of two half-maps")
    f.add_argument("map_a")
    f.add_argument("map_b")
    f.add_argument("--apix", type=float, default=None)
    f.add_argument("--out", default=None, help="write fsc.csv / fsc.star / fsc.png here")
    f.set_defaults(func=cmd_fsc)
    return ap


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
