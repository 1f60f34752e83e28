"""GPU kernel benchmark: correctness against the numpy references, then warm timings against the GPU's ceilings.

    python bench/gpu.py [--box 128] [--images 1000] [--rotations 8] [--reps 10] [--cpu-reps 2] [--json PATH]

1. checks extraction and insertion (through ``CUDABackend``) against ``kernels_ref`` at a small size;
2. times the kernels warm with CUDA events (median of ``--reps`` runs) at box 128, i.e. a padded 256^3
   transform, for images x rotations slices of all half-plane points within the Nyquist radius - 1;
3. measures the ceilings: cuBLAS SGEMM (CuPy matmul, float32, TF32 off) and memory bandwidth (CuPy device
   copy), and reports each kernel's nominal FLOP/s and bytes/s against them;
4. times the CPU kernels (numba, all cores) at the same size with fewer repetitions, for the speed-up;
5. times whole SGD iterations (search + update, ``SGDRun.step``) at each of ``--iter-boxes`` (default: ``--box``)
   with minibatch ``--iter-minibatch`` at the maximum resolution (2.5 px) on the cuda backend and on the cpu
   backend;
6. prints a table and writes JSON (default bench/results/gpu.json).

Nominal work per frequency point and rotation (what a kernel does if nothing is cached):
  extraction: 16 float32 gathers (8 corners x re/im) + 8 bytes written; ~60 flops (rotation 15, trilinear 45)
  insertion: 12 bytes read (value + weight), 2 x 8 corners x 3 float32 atomics (q and its Friedel mate -q),
             an atomic counted as 8 bytes (read + write); ~110 flops
Rotations are random (the worst case for cache reuse). Exit status: 0 ok, 1 check failed, 2 no GPU.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EXTRACT_FLOPS, EXTRACT_BYTES = 60, 16 * 4 + 8
INSERT_FLOPS, INSERT_BYTES = 110, 12 + 2 * 8 * 3 * 8
CHECK_TOL = 1e-4  # relative to the largest reference value


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def _fail(msg: str, code: int):
    print(f"bench/gpu.py: {msg}", file=sys.stderr)
    sys.exit(code)


def _backend():
    """The CUDA backend, or exit 2 with the reason."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        _fail("NUMBA_ENABLE_CUDASIM=1 is set: this benchmark needs a real GPU, not the simulator", 2)
    from scipion_abinitrefine.engine import backend

    if not backend.gpu_visible():
        _fail("no NVIDIA GPU visible to numba-cuda (numba.cuda.is_available() is False); run this on a GPU "
              "machine with numba-cuda and CuPy installed", 2)
    try:
        return backend.get_backend("cuda")
    except (RuntimeError, ImportError) as e:
        _fail(f"cannot start the cuda backend: {e}", 2)


def _problem(rng, Dp, radius, n):
    from scipion_abinitrefine.engine import fourier, so3

    F = (rng.standard_normal((Dp,) * 3, np.float32) + 1j * rng.standard_normal((Dp,) * 3, np.float32))
    F = F.astype(np.complex64)
    R = so3.random_rotations(n, rng).astype(np.float32)
    kx, ky = (a.astype(np.float32) for a in fourier.half_plane_points(radius))
    m = len(kx)
    vals = (rng.standard_normal((n, m), np.float32) + 1j * rng.standard_normal((n, m), np.float32))
    wts = rng.random((n, m), np.float32)
    return F, R, kx, ky, vals.astype(np.complex64), wts


def _rel(got, ref):
    return float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-30))


def check(be) -> dict:
    """Both kernels through the backend against the references: box 16 padded 32 (edge clipped) and 24/48."""
    from scipion_abinitrefine.testing import kernels_ref

    out = {}
    rng = np.random.default_rng(0)
    for Dp, radius, n in ((32, 8.5, 7), (48, 11, 5)):
        F, R, kx, ky, vals, wts = _problem(rng, Dp, radius, n)
        got = be.to_host(be.extract_slices(be.asarray(F), be.asarray(R), be.asarray(kx), be.asarray(ky), 2))
        out[f"extract_Dp{Dp}"] = _rel(got, kernels_ref.extract_slices_ref(F, R, kx, ky, 2))
        acc = be.accumulator(Dp)
        acc.insert(be.asarray(R), be.asarray(kx), be.asarray(ky), 2, be.asarray(vals), be.asarray(wts))
        acc.insert(R, kx, ky, 2, vals, wts)  # numpy inputs too; accumulates
        B, W = (be.to_host(a) for a in acc.result())
        Br, Wr = kernels_ref.insert_slices_ref(Dp, R, kx, ky, 2, vals, wts)
        out[f"insert_B_Dp{Dp}"] = _rel(B, 2 * Br)
        out[f"insert_W_Dp{Dp}"] = _rel(W, 2 * Wr)
        acc.reset()
        out[f"reset_Dp{Dp}"] = float(abs(be.to_host(acc.result()[1])).max())
    return out


def time_gpu(cp, fn, reps: int, warm: int = 2) -> dict:
    """Median/min seconds of fn() between CUDA events on CuPy's current stream, after warm-up calls."""
    for _ in range(warm):
        fn()
    cp.cuda.get_current_stream().synchronize()
    ts = []
    for _ in range(reps):
        a, b = cp.cuda.Event(), cp.cuda.Event()
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(cp.cuda.get_elapsed_time(a, b) / 1e3)
    return dict(median_s=statistics.median(ts), min_s=min(ts), reps=reps)


def time_cpu(fn, reps: int) -> dict:
    fn()  # warm: compile / load the cache
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return dict(median_s=statistics.median(ts), min_s=min(ts), reps=reps)


def _sgemm_s(cp, n: int, reps: int) -> float:
    rng = cp.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=cp.float32)
    b = rng.standard_normal((n, n), dtype=cp.float32)
    c = cp.empty((n, n), cp.float32)
    return time_gpu(cp, lambda: cp.matmul(a, b, out=c), reps)["median_s"]


def _copy_s(cp, nbytes: int, reps: int) -> tuple[float, float]:
    src = cp.ones(nbytes // 4, cp.float32)
    dst = cp.empty_like(src)
    t_copy = time_gpu(cp, lambda: cp.copyto(dst, src), reps)["median_s"]
    t_memcpy = time_gpu(cp, lambda: dst.data.copy_from_device_async(src.data, nbytes), reps)["median_s"]
    return t_copy, t_memcpy


def ceilings(cp, reps: int) -> dict:
    """cuBLAS SGEMM FLOP/s and device-copy bytes/s (read + write) measured here."""
    n, nbytes = 8192, 1 << 30
    t_mm = _sgemm_s(cp, n, reps)
    t_copy, t_memcpy = _copy_s(cp, nbytes, reps)
    cp.get_default_memory_pool().free_all_blocks()
    return dict(sgemm_flops=2.0 * n**3 / t_mm, sgemm_n=n, tf32=os.environ.get("CUPY_TF32", "0"),
                copy_bytes_per_s=2.0 * nbytes / t_copy, memcpy_bytes_per_s=2.0 * nbytes / t_memcpy,
                bandwidth_bytes_per_s=2.0 * nbytes / min(t_copy, t_memcpy))


def gpu_timings(be, F, R, kx, ky, vals, wts, pad: int, reps: int, threads: int):
    """Kernel-only and backend-call timings; also returns the extracted slices (host) for the CPU comparison."""
    from scipion_abinitrefine.engine import kernels_cuda

    cp = be.xp
    n, m = vals.shape
    Dp = F.shape[0]
    dv, st = be.device_view, be.stream()
    Fd, Rd, kxd, kyd, vd, wd = (cp.asarray(a) for a in (F, R, kx, ky, vals, wts))
    out = cp.empty((n, m, 2), cp.float32)
    acc = be.accumulator(Dp)
    a_F, a_R, a_kx, a_ky, a_out = dv(Fd.view(cp.float32).reshape(Dp, Dp, Dp, 2)), dv(Rd), dv(kxd), dv(kyd), dv(out)
    a_B, a_W, a_v, a_w = dv(acc.Bv), dv(acc.W), dv(vd.view(cp.float32).reshape(n, m, 2)), dv(wd)

    def k_extract():
        kernels_cuda.extract_slices_launch(a_F, a_R, a_kx, a_ky, pad, a_out, stream=st, threads=threads)

    def k_insert():
        kernels_cuda.insert_slices_launch(a_B, a_W, a_R, a_kx, a_ky, pad, a_v, a_w, stream=st, threads=threads)

    res = {
        "extract_kernel": time_gpu(cp, k_extract, reps),
        "extract_backend_call": time_gpu(cp, lambda: be.extract_slices(Fd, Rd, kxd, kyd, pad), reps),
        "insert_kernel": time_gpu(cp, k_insert, reps),
        "insert_backend_call": time_gpu(cp, lambda: acc.insert(Rd, kxd, kyd, pad, vd, wd), reps),
    }
    return res, cp.asnumpy(out.view(cp.complex64).reshape(n, m))


def cpu_timings(F, R, kx, ky, vals, wts, pad: int, reps: int, gpu_out) -> dict:
    from scipion_abinitrefine.engine import kernels_cpu

    res = {"extract_kernel": time_cpu(lambda: kernels_cpu.extract_slices(F, R, kx, ky, pad), reps)}
    res["extract_gpu_vs_cpu_rel_err"] = _rel(gpu_out, kernels_cpu.extract_slices(F, R, kx, ky, pad))
    acc = kernels_cpu.Accumulator(F.shape[0])
    res["insert_kernel"] = time_cpu(lambda: acc.insert(R, kx, ky, pad, vals, wts), reps)
    res["insert_thread_buffers"] = acc.T
    return res


def iteration_timings(be, box: int, minibatch: int, reps: int, seed: int = 0) -> dict:
    """Seconds per SGD iteration at the maximum resolution (2.5 px), final minibatch, on backend ``be``.

    The work per iteration (levels, beam, points) does not depend on the model's content, so a random
    start measures it; the first iteration is a warm-up (numba compile, temperature and noise set-up).
    """
    from scipion_abinitrefine.engine import sgd, simulate
    from scipion_abinitrefine.testing import sources

    apix = 1.0
    vol = simulate.make_phantom(box, apix)
    images, truth = simulate.simulate_particles(vol, minibatch, apix, snr=0.05, seed=seed)
    data = sources.ArrayParticles(images, truth["ctf"], apix)
    p = sgd.SGDParams(max_res_A=2.5 * apix, init_minibatch=minibatch, final_minibatch=minibatch, seed=seed)
    run = sgd.SGDRun(data, np.arange(len(images)), p, backend=be)
    run.iteration = max(0, run.n_iters - reps - 1)  # final radius and minibatch
    run.step()
    log = []
    for _ in range(reps):
        e = run.step()
        be.synchronize()
        log.append(e)
    med = {k: statistics.median(e[k] for e in log) for k in ("t_search", "t_update", "seconds")}
    return dict(box=box, minibatch=minibatch, radius=log[-1]["radius"], resolution_A=log[-1]["resolution_A"],
                reps=reps, search_s=med["t_search"], update_s=med["t_update"], iteration_s=med["seconds"],
                images_per_s=minibatch / med["seconds"])


def device_info(cp) -> dict:
    import numba

    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    name = props["name"]
    return dict(gpu=name.decode() if isinstance(name, bytes) else str(name), cc=f"{props['major']}.{props['minor']}",
                sms=int(props["multiProcessorCount"]), gpu_mem_gib=round(props["totalGlobalMem"] / 2**30, 1),
                cupy=cp.__version__, numba=numba.__version__, numba_cuda=_version("numba-cuda"),
                python=platform.python_version(), cpu_threads=numba.get_num_threads())


def table(gpu: dict, cpu: dict, ceil: dict, samples: int) -> list[dict]:
    work = {"extract": (EXTRACT_FLOPS, EXTRACT_BYTES), "insert": (INSERT_FLOPS, INSERT_BYTES)}
    rows = []
    for dev, timings in (("gpu", gpu), ("cpu", cpu)):
        for key, t in timings.items():
            if not isinstance(t, dict):
                continue
            kind = key.split("_")[0]
            fl, by = work[kind]
            s = t["median_s"]
            row = dict(name=f"{dev} {key}", ms=1e3 * s, msamples_s=samples / s / 1e6, gflops=fl * samples / s / 1e9,
                       gbytes_s=by * samples / s / 1e9, pct_sgemm=None, pct_bw=None, speedup_vs_cpu=None)
            if dev == "gpu":
                row["pct_sgemm"] = 100 * row["gflops"] * 1e9 / ceil["sgemm_flops"]
                row["pct_bw"] = 100 * row["gbytes_s"] * 1e9 / ceil["bandwidth_bytes_per_s"]
                c = cpu.get(f"{kind}_kernel")
                row["speedup_vs_cpu"] = c["median_s"] / s if c else None
            rows.append(row)
    return rows


def print_table(rows: list[dict], ceil: dict):
    def f(v, fmt):
        return "-" if v is None else format(v, fmt)

    print(f"\nceilings: SGEMM {ceil['sgemm_flops'] / 1e12:.1f} TFLOP/s (cuBLAS via CuPy, n={ceil['sgemm_n']}, "
          f"CUPY_TF32={ceil['tf32']}), bandwidth {ceil['bandwidth_bytes_per_s'] / 1e9:.0f} GB/s "
          "(device copy, read + write)")
    hdr = f"{'kernel':<26}{'ms':>10}{'Msamp/s':>11}{'GFLOP/s':>10}{'%SGEMM':>8}{'GB/s*':>9}{'%BW':>7}{'xCPU':>8}"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(f"{r['name']:<26}{r['ms']:>10.2f}{r['msamples_s']:>11.0f}{r['gflops']:>10.0f}"
              f"{f(r['pct_sgemm'], '.1f'):>8}{r['gbytes_s']:>9.0f}{f(r['pct_bw'], '.0f'):>7}"
              f"{f(r['speedup_vs_cpu'], '.1f'):>8}")
    print("* nominal bytes: every gather and atomic counted as memory traffic (caches can make %BW exceed 100)")


def print_iterations(iters: dict):
    first = next(iter(iters.values()))
    print(f"\nSGD iteration at {first['resolution_A']:.2f} A (2.5 px), box {first['box']}, "
          f"minibatch {first['minibatch']}:")
    print(f"{'backend':<10}{'search s':>10}{'update s':>10}{'total s':>10}{'images/s':>10}{'xCPU':>8}")
    cpu = iters.get("cpu")
    for k, r in iters.items():
        sp = cpu["iteration_s"] / r["iteration_s"] if cpu and k != "cpu" else None
        print(f"{k:<10}{r['search_s']:>10.3f}{r['update_s']:>10.3f}{r['iteration_s']:>10.3f}"
              f"{r['images_per_s']:>10.0f}{'-' if sp is None else format(sp, '.1f'):>8}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--box", type=int, default=128)
    ap.add_argument("--pad", type=int, default=2)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--rotations", type=int, default=8, help="rotations per image (slices = images x rotations)")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--cpu-reps", type=int, default=2)
    ap.add_argument("--no-cpu", action="store_true", help="skip the CPU timings")
    ap.add_argument("--threads", type=int, default=256, help="CUDA threads per block")
    ap.add_argument("--iter-minibatch", type=int, default=1000, help="minibatch of the timed SGD iterations")
    ap.add_argument("--iter-reps", type=int, default=3, help="timed SGD iterations on the GPU (CPU: 1)")
    ap.add_argument("--iter-boxes", type=int, nargs="+", help="boxes of the timed SGD iterations (default: --box)")
    ap.add_argument("--json", default=str(ROOT / "bench" / "results" / "gpu.json"))
    args = ap.parse_args(argv)

    be = _backend()
    cp = be.xp
    from scipion_abinitrefine.engine import kernels_cuda

    info = device_info(cp)
    print("device:", ", ".join(f"{k}={v}" for k, v in info.items()))

    # 1. correctness
    checks = check(be)
    print("checks vs kernels_ref (relative max error):", ", ".join(f"{k}={v:.2e}" for k, v in checks.items()))
    bad = {k: v for k, v in checks.items() if not v <= CHECK_TOL}
    if bad:
        _write(args.json, dict(info=info, checks=checks, ok=False))
        _fail(f"kernel check FAILED (tolerance {CHECK_TOL}): {bad}", 1)

    # 2. the kernels at full size
    D, pad = args.box, args.pad
    Dp, n = pad * D, args.images * args.rotations
    F, R, kx, ky, vals, wts = _problem(np.random.default_rng(1), Dp, D / 2 - 1, n)
    m = len(kx)
    size = dict(box=D, pad=pad, Dp=Dp, images=args.images, rotations_per_image=args.rotations, slices=n,
                points_per_slice=m, samples=n * m, threads_per_block=args.threads,
                launch=kernels_cuda.launch_config(m, n, args.threads))
    print(f"size: box {D}, padded {Dp}^3, {n} slices ({args.images} images x {args.rotations} rotations) "
          f"x {m} points = {n * m / 1e6:.1f} M samples")
    gpu, gpu_out = gpu_timings(be, F, R, kx, ky, vals, wts, pad, args.reps, args.threads)
    cp.get_default_memory_pool().free_all_blocks()

    # 3. ceilings, 4. CPU
    ceil = ceilings(cp, max(3, args.reps // 2))
    cpu = {} if args.no_cpu else cpu_timings(F, R, kx, ky, vals, wts, pad, args.cpu_reps, gpu_out)

    rows = table(gpu, cpu, ceil, n * m)
    print_table(rows, ceil)
    if cpu:
        print(f"GPU vs CPU extraction at full size: relative max error {cpu['extract_gpu_vs_cpu_rel_err']:.2e}")

    # 5. whole iterations (each box's table printed as soon as it is measured)
    from scipion_abinitrefine.engine.backend import get_backend

    iters = {}
    result = dict(info=info, checks=checks, ok=True, size=size, gpu=gpu, cpu=cpu, ceilings=ceil, iterations=iters,
                  table=rows, nominal_per_sample=dict(extract_flops=EXTRACT_FLOPS, extract_bytes=EXTRACT_BYTES,
                                                      insert_flops=INSERT_FLOPS, insert_bytes=INSERT_BYTES))
    for box in args.iter_boxes or [D]:
        it = iters[f"box{box}"] = {"gpu": iteration_timings(be, box, args.iter_minibatch, args.iter_reps)}
        cp.get_default_memory_pool().free_all_blocks()
        if not args.no_cpu:
            it["cpu"] = iteration_timings(get_backend("cpu"), box, args.iter_minibatch, 1)
        print_iterations(it)
        _write(args.json, result)  # what is measured so far, should a later box not finish

    # 6. report
    print(f"wrote {args.json}")


def _write(path, obj):
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(obj, indent=1, default=str))


if __name__ == "__main__":
    main()
