"""Coarse-to-fine pose search over SO(3) x shifts with the Gaussian likelihood.

For an image X (half-plane Fourier points), CTF C, noise variance s2 per point and a projection P of the
model, the log-likelihood of a pose up to a constant is (sum over the half plane = half the full plane)

    LL = 2 Re sum_k conj(X_k phi_k(t)) C_k P_k / s2_k  -  sum_k C_k^2 |P_k|^2 / s2_k

where phi(t) shifts the image by t pixels (t is the particle's origin: centring shift). Level 0 scores every
base-grid rotation x every base shift; the cross term for all (image, shift) pairs and all rotations is a
single real matrix product, and so is the norm term. Each finer level keeps the best ``top_k`` poses per
image, splits each into 8 rotation x 4 shift children at half the step, and scores them at a Fourier radius
that the finer step can use (``level_radius``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import fourier, so3, threads
from .posterior import draw_poses, top_pairs

_BASE = None
# How far past the radius its angular step resolves (``radius_for_step``) a level scores. The coarse level
# decides which poses the beam keeps: scored at the step's own radius (~28 A for the demo particle) it
# holds too little signal at low SNR. With the true map at SNR 0.01 (demo phantom, box 64, 8 A, beam 8)
# the median pose error is 103 deg at reach 1 and 12.5 deg at reach 2 (45% within 10 deg), for 25% more
# search time; a beam of 32 at reach 1 reaches only 53 deg at 3x the time.
SCORE_REACH = 2.0
# Posterior mass outside the beam at level 0 below which no image of a batch needs samples (their weight
# would be ~0): saves the samples' scoring on easy data, where every posterior is sharp.
SHARP = 1e-3


def base_rotations() -> np.ndarray:
    global _BASE
    if _BASE is None:
        _BASE = so3.base_grid().astype(np.float32)
    return _BASE


@dataclass
class SearchResult:
    R: np.ndarray  # (B, n, 3, 3) best poses, best first
    t: np.ndarray  # (B, n, 2) shifts (origin) in pixels
    w: np.ndarray  # (B, n) posterior weights (sum 1)
    ess: np.ndarray  # (B,) effective number of base-grid rotations (3D ESS) at level 0
    ll_best: np.ndarray  # (B,) best log-likelihood at the final level
    # (B,) log marginal likelihood ratio of the model against "noise only" (T = 1, level-0 grid, uniform
    # pose prior): log mean over poses of exp(LL). What RELION reports as rlnLogLikeliContribution
    # (up to the noise-only constant); low for images the model cannot explain (junk)
    evidence: np.ndarray = None


class PoseSearch:
    """Pose search configuration for one box / particle size.

    Parameters
    ----------
    box : int
    particle_radius_px : float
        Radius of the particle (window) in pixels; sets the angular step each Fourier radius needs.
    max_shift_px : float
        Largest origin shift searched (pixels).
    top_k : int
        Poses kept per image between levels.
    min_radius : float
        Fourier radius (index units) below which no point enters the pose likelihood (0: every point):
        the band-limited likelihood of high-frequency ab initio (``SGDParams.min_align_res_A``).
    """

    def __init__(self, box: int, particle_radius_px: float, max_shift_px: float, top_k: int = 8,
                 backend=None, pad: int = 2, chunk: int | None = None, base=None, min_radius: float = 0.0):
        from .backend import get_backend

        self.box = box
        self.rp = float(particle_radius_px)
        self.max_shift = float(max_shift_px)
        self.top_k = int(top_k)
        self.be = backend or get_backend("cpu")
        self.pad = pad
        # images per level-0 chunk, and bytes of one complex temporary (images x poses x Fourier points) the
        # finer levels may allocate at once: each backend's own (``search_chunk``, ``search_fine_bytes``)
        self.chunk = int(chunk or self.be.search_chunk)
        self.fine_bytes = int(self.be.search_fine_bytes)
        self.step0 = so3.base_step_deg()
        self.score_reach = SCORE_REACH
        # the level-0 rotations: the whole base grid, or one asymmetric unit of it (symmetry.asymmetric_unit)
        self.base = base_rotations() if base is None else np.asarray(base, np.float32)
        self.r_lo = float(min_radius)

    def band(self, s2, kx, ky) -> np.ndarray:
        """The noise variance per point ``s2`` (host) as the pose likelihood sees it: infinite (weight 0) at
        the points below the lower radius ``r_lo``, so that they add nothing to a pose's score, its
        evidence or its polish (``refine.refine_poses``)."""
        s2 = np.asarray(s2, np.float32)
        if self.r_lo <= 0:
            return s2
        m = len(s2)
        low = np.hypot(kx[:m], ky[:m]) < self.r_lo
        return np.where(low, np.float32(np.inf), s2).astype(np.float32)

    # -- schedule of the hierarchy -------------------------------------------------------------
    def radius_for_step(self, step_deg: float) -> float:
        """Largest Fourier radius (index units) an angular step can resolve for this particle size.

        A rotation error d moves the slice at radius k by k*d; the transform of an object of radius rp
        in box D decorrelates over ~D/(2 rp) index units.
        """
        return self.box / (2.0 * self.rp * np.deg2rad(step_deg))

    def levels(self, r: float) -> list[float]:
        """Fourier radius used at each level, ending with r itself.

        A level scores its grid out to ``score_reach`` x the radius its step resolves (the grid still
        samples the likelihood peak there), and levels are added until the last step resolves r.
        """
        radii = []
        step = self.step0
        # with a lower radius a level scores at least half again as far out: a band of points to score
        floor = max(4.0, 1.5 * self.r_lo)
        while True:
            radii.append(min(r, max(floor, self.score_reach * self.radius_for_step(step))))
            if self.radius_for_step(step) >= r or len(radii) >= 7:
                break
            step /= 2
        radii[-1] = r
        return radii

    def base_shifts(self, k0: float) -> tuple[np.ndarray, float]:
        """Shift grid (n, 2) px at level 0 and its step: phase error at radius k0 stays below ~pi/2."""
        s0 = float(np.clip(self.box / (4.0 * max(k0, 1.0)), 0.5, max(self.max_shift, 0.5)))
        n = int(np.ceil(self.max_shift / s0 - 1e-6))
        g = np.arange(-n, n + 1) * s0
        sx, sy = np.meshgrid(g, g, indexing="xy")
        t = np.stack([sx.ravel(), sy.ravel()], 1)
        t = t[np.hypot(t[:, 0], t[:, 1]) <= self.max_shift + 0.5 * s0 + 1e-6]
        return t.astype(np.float32), s0

    # -- the search ----------------------------------------------------------------------------
    def search(self, F, X, C, s2, kx, ky, r: float, temperature: float = 1.0, n_keep: int = 4,
               return_ll0: bool = False, top_k: int | None = None, n_samples: int = 0, rng=None):
        """Search poses for a batch of images.

        Parameters
        ----------
        F : padded model transform (backend array, complex64)
        X : (B, m) complex64 image values at points (kx, ky) sorted by radius, m = points within r
        C : (B, m) float32 CTF at those points
        s2 : (m,) float32 noise variance per point
        r : current Fourier radius (index units)
        temperature : posterior temperature (>= 1 anneals)
        n_keep : poses returned per image (for back-projection), with posterior weights
        top_k : beam width between levels for this call (default: the searcher's ``top_k``)
        n_samples : poses drawn per image from the level-0 posterior outside the beam (0: none). While
            the posterior is broad (low resolution, low SNR, a poor model) the beam holds a small part of
            its mass; back-projecting the beam alone is then a near-hard assignment that lets the model
            fit its own noise. The samples carry the rest of the mass (``_outside_mass``), so the update
            marginalises over poses; when the posterior is sharp their weight falls to ~0.
        rng : numpy Generator for the samples' uniforms (drawn on the host: same draws on any backend)
        """
        be = self.be
        xp = be.xp
        radii = self.levels(r)
        B = X.shape[0]
        # everything below stays in the backend's array module (numpy / CuPy): one copy in, one copy out
        F = be.asarray(F)
        X = be.asarray(X, np.complex64)
        C = be.asarray(C, np.float32)
        Rg = be.asarray(self.base)
        m0 = fourier.n_points_within(kx, ky, radii[0])
        shifts_h, s_step = self.base_shifts(radii[0])
        shifts = be.asarray(shifts_h)
        P0 = be.extract_slices(F, Rg, kx[:m0], ky[:m0], self.pad)  # (nR, m0)
        M = int(n_samples)
        # two uniforms per draw (the rotation, then the shift given it), drawn on the host for all images
        # at once: the same draws on any backend and with any number of workers
        U = (rng or np.random.default_rng()).random((B, M, 2)) if M else None
        ctx = _Level0(F=F, inv_s2=1.0 / be.asarray(self.band(s2, kx, ky)), kx=kx, ky=ky, r=r, radii=radii, Rg=Rg,
                      shifts=shifts, s_step=s_step, m0=m0, K=min(top_k or self.top_k, Rg.shape[0] * len(shifts_h)),
                      M=M, T=temperature, n_keep=n_keep, return_ll0=return_ll0,
                      ph0=fourier.shift_phases(kx[:m0], ky[:m0], shifts, self.box, xp),  # (S, m0)
                      P0r=xp.ascontiguousarray(xp.concatenate([P0.real, P0.imag], axis=1).astype(np.float32).T),
                      P0n=xp.ascontiguousarray((xp.abs(P0) ** 2).astype(np.float32).T))  # (2 m0, nR), (m0, nR)
        edges = threads.chunk_edges(B, self.chunk)
        bounds = threads.split_parts(edges, 1 if return_ll0 else threads.search_workers(self.be))

        def run(ab):
            a, b = ab
            return self._search_part(ctx, X[a:b], C[a:b], None if U is None else U[a:b],
                                     edges[(edges >= a) & (edges <= b)] - a)

        parts = [run(bounds[0])] if len(bounds) == 1 else list(threads.search_pool(len(bounds)).map(run, bounds))
        h = be.to_host
        width = max(p[0].shape[1] for p in parts)
        out = [[], [], [], [], [], []]
        for Rk, tk, w, ess, llb, ev, _ in parts:
            if Rk.shape[1] < width:  # a part whose posteriors were all sharp drew no samples: zero weights
                pad = width - Rk.shape[1]
                Rk = xp.concatenate([Rk, xp.repeat(Rk[:, :1], pad, axis=1)], axis=1)
                tk = xp.concatenate([tk, xp.repeat(tk[:, :1], pad, axis=1)], axis=1)
                w = xp.concatenate([w, xp.zeros((w.shape[0], pad), w.dtype)], axis=1)
            for lst, v in zip(out, (Rk, tk, w, ess, llb, ev)):
                lst.append(h(v))
        Rk, tk, w, ess, llb, ev = (np.concatenate(v) for v in out)
        res = SearchResult(Rk, tk, w.astype(np.float32), ess, llb, ev)
        if return_ll0:
            return res, parts[0][6]
        return res

    def _search_part(self, ctx, X, C, U, edges):
        """The search of images X, C (a part of the batch): level 0 in the chunks between ``edges``, the finer
        levels, the samples."""
        be = self.be
        xp = be.xp
        inv_s2, kx, ky, m0, K, M = ctx.inv_s2, ctx.kx, ctx.ky, ctx.m0, ctx.K, ctx.M
        Rg, shifts, temperature = ctx.Rg, ctx.shifts, ctx.T
        nR = Rg.shape[0]
        S = shifts.shape[0]
        B = X.shape[0]
        ll0_all = [] if ctx.return_ll0 else None
        parR = xp.empty((B, K, 3, 3), np.float32)
        part = xp.empty((B, K, 2), np.float32)
        ess = xp.empty(B, np.float32)
        evidence = xp.empty(B, np.float32)
        if M:
            top0 = xp.empty((B, K), np.int64)
            outside0 = xp.empty(B, np.float32)  # level-0 posterior mass outside the beam
            samp = xp.empty((B, M), np.int64)
            logp_samp = xp.empty((B, M), np.float32)
        for a, b in zip(edges[:-1], edges[1:]):
            Xs = X[a:b, None, :m0] * ctx.ph0[None]  # (bc, S, m0) shifted images
            Y = xp.conj(Xs) * (C[a:b, None, :m0] * inv_s2[None, None, :m0])
            Y2 = xp.concatenate([Y.real, -Y.imag], axis=2).reshape(-1, 2 * m0).astype(np.float32)
            cross = (Y2 @ ctx.P0r).reshape(b - a, S, -1)  # Re sum conj(Xs) C P / s2: one GEMM
            norm = (C[a:b, :m0] ** 2 * inv_s2[None, :m0]) @ ctx.P0n  # (bc, nR)
            ll = (2.0 * cross - norm[:, None, :]) / temperature
            if ll0_all is not None:
                ll0_all.append(be.to_host(ll * temperature))
            flat = ll.reshape(b - a, -1)
            top = top_pairs(xp, ll, K)
            parR[a:b] = Rg[top % nR]
            part[a:b] = shifts[top // nR]
            # 3D ESS: posterior over rotations, marginalised over shifts
            mx = flat.max(axis=1, keepdims=True)
            pf = xp.exp(flat - mx)  # the level-0 posterior, unnormalised: ESS, evidence, samples
            pr = pf.reshape(b - a, S, -1).sum(axis=1)  # (bc, nR) marginal over shifts
            zr = pr.sum(axis=1, keepdims=True)
            ess[a:b] = 1.0 / ((pr / zr) ** 2).sum(axis=1)
            if temperature == 1.0:  # the evidence is at T = 1: the same exponentials
                evidence[a:b] = mx[:, 0] + xp.log(zr[:, 0] / flat.shape[1])
            else:
                f1 = flat * temperature
                m1 = f1.max(axis=1)
                evidence[a:b] = m1 + xp.log(xp.exp(f1 - m1[:, None]).mean(axis=1))
            if M:
                top0[a:b] = top
                outside0[a:b] = 1.0 - xp.take_along_axis(pf, top, 1).sum(axis=1) / zr[:, 0]
                samp[a:b], logp_samp[a:b] = draw_poses(xp, pf.reshape(b - a, S, -1), pr, be.asarray(U[a:b]))
        # the finer levels per sub-chunk of images: each image's poses depend on its own values only, and
        # their temporaries (B x beam x children x points) are bounded (``fine_bytes``) instead of growing
        # with the batch; freshly mapped arrays of 100+ MB per call cost as much system time (the kernel
        # zeroing their pages) as the arithmetic at box 128
        need = bool(M) and float(outside0.max()) > SHARP  # else every posterior is inside its beam
        m_fine = fourier.n_points_within(kx, ky, ctx.r)
        nf = max(1, int(self.fine_bytes // (64 * max(K, ctx.n_keep + M) * max(m_fine, 1))))
        fin = [self._fine(ctx, X[a:b], C[a:b], parR[a:b], part[a:b],
                          (top0[a:b], outside0[a:b], samp[a:b], logp_samp[a:b]) if need else None)
               for a, b in ((a, min(B, a + nf)) for a in range(0, B, nf))]
        Rk, tk, w, llb = (xp.concatenate(v) for v in zip(*fin))
        ll0 = np.concatenate(ll0_all) if ll0_all is not None else None
        return Rk, tk, w, ess, llb, evidence, ll0

    def _fine(self, ctx, X, C, parR, part, samples):
        """The finer levels, the kept poses' weights and (``samples``: level 0's beam, outside mass and
        draws) the sampled poses, for images X, C whose level-0 beam is parR, part."""
        xp = self.be.xp
        F, inv_s2, kx, ky, K, n_keep, temperature = ctx.F, ctx.inv_s2, ctx.kx, ctx.ky, ctx.K, ctx.n_keep, ctx.T
        radii = ctx.radii
        step, sstep = self.step0, ctx.s_step
        ll = None
        for lev in range(1, len(radii)):
            parR, part, ll = self._refine(F, X, C, inv_s2, kx, ky, radii[lev], parR, part, step, sstep,
                                          keep=K if lev < len(radii) - 1 else max(n_keep, 1))
            step, sstep = step / 2, sstep / 2
        if ll is None:  # single level: score the kept poses at r for weights
            parR, part, ll = self._score(F, X, C, inv_s2, kx, ky, radii[0], parR, part, keep=n_keep)
        w = ll / temperature
        w = xp.exp(w - w.max(axis=1, keepdims=True))
        w = w[:, :n_keep]
        w /= w.sum(axis=1, keepdims=True)
        Rk, tk = parR[:, :n_keep], part[:, :n_keep]
        if samples is not None:
            top0, outside0, samp, logp_samp = samples
            Rs, ts, ws, alpha = self._outside_mass(F, X, C, inv_s2, kx, ky, ctx.r, temperature, ctx.Rg,
                                                   ctx.shifts, top0, samp, logp_samp)
            # an image whose posterior is inside its beam gets no samples, as when its whole part has
            # none (search() pads such parts): the result does not depend on which images share a part
            sharp = outside0 <= SHARP
            alpha = xp.where(sharp, 0.0, alpha).astype(np.float32)
            ws = xp.where(sharp[:, None], 0.0, ws).astype(np.float32)
            Rs = xp.where(sharp[:, None, None, None], Rk[:, :1], Rs)
            ts = xp.where(sharp[:, None, None], tk[:, :1], ts)
            Rk = xp.concatenate([Rk, Rs], axis=1)
            tk = xp.concatenate([tk, ts], axis=1)
            w = xp.concatenate([w * (1.0 - alpha)[:, None], ws], axis=1)
        return Rk, tk, w, ll[:, 0]

    def _outside_mass(self, F, X, C, inv_s2, kx, ky, r, T, Rg, shifts, top0, samp, logp_samp):
        """Posterior mass outside the beam, and the sampled poses that carry it.

        The beam's K level-0 cells and the M sampled cells are scored at the final radius r on the base
        grid (the same cell size for both). Importance sampling with the level-0 posterior p0 as proposal
        estimates the outside mass: Out = mean over samples not in the beam of exp(LL_r/T) / p0, In = sum
        over the beam cells of exp(LL_r/T); alpha = Out / (In + Out) is the weight the samples share (by
        their importance weights), 1 - alpha the beam's.
        """
        xp = self.be.xp
        nR = Rg.shape[0]
        B, K = top0.shape
        M = samp.shape[1]
        cells = xp.concatenate([top0, samp], axis=1)  # (B, K + M)
        ll = self._score_all(F, X, C, inv_s2, kx, ky, r, Rg[cells % nR], shifts[cells // nR]) / T
        in_beam = (samp[:, :, None] == top0[:, None, :]).any(axis=2)
        lw = xp.where(in_beam, -np.inf, ll[:, K:] - logp_samp)  # log importance weights
        ref = xp.maximum(ll[:, :K].max(axis=1), lw.max(axis=1))[:, None]
        s_in = xp.exp(ll[:, :K] - ref).sum(axis=1)
        ew = xp.exp(lw - ref)
        s_out = ew.sum(axis=1) / M
        alpha = (s_out / (s_in + s_out)).astype(np.float32)
        ws = ew / xp.maximum(ew.sum(axis=1, keepdims=True), 1e-30) * alpha[:, None]
        return Rg[samp % nR], shifts[samp // nR], ws.astype(np.float32), alpha

    def _score_all(self, F, X, C, inv_s2, kx, ky, k, R, t):
        """Log-likelihoods (B, n) of given poses R (B, n, 3, 3), t (B, n, 2) at radius k."""
        xp = self.be.xp
        B, n = R.shape[:2]
        m = fourier.n_points_within(kx, ky, k)
        P = self.be.extract_slices(F, R.reshape(-1, 3, 3), kx[:m], ky[:m], self.pad).reshape(B, n, m)
        ph = fourier.shift_phases(kx[:m], ky[:m], t, self.box, xp).reshape(B, n, m)
        w = C[:, None, :m] * inv_s2[None, None, :m]
        cross = xp.real(xp.conj(X[:, None, :m] * ph) * P * w).sum(axis=2)
        norm = (xp.abs(P) ** 2 * (C[:, None, :m] * w)).sum(axis=2)
        return 2.0 * cross - norm

    def _score(self, F, X, C, inv_s2, kx, ky, k, R, t, keep):
        """Score given poses R (B, n, 3, 3), t (B, n, 2) at radius k; return the best ``keep`` sorted."""
        xp = self.be.xp
        ll = self._score_all(F, X, C, inv_s2, kx, ky, k, R, t)
        order = xp.argsort(-ll, axis=1)[:, :keep]
        take = xp.take_along_axis
        return (take(R, order[:, :, None, None], 1), take(t, order[:, :, None], 1), take(ll, order, 1))

    def _refine(self, F, X, C, inv_s2, kx, ky, k, parR, part, step, sstep, keep):
        """Children of each kept pose (8 rotations x 4 shifts at half the step), best ``keep`` returned."""
        be = self.be
        xp = be.xp
        B, K = parR.shape[:2]
        m = fourier.n_points_within(kx, ky, k)
        # the children's rotations where the poses are (no round trip to the host per level)
        chR = parR.reshape(-1, 1, 3, 3) @ be.asarray(so3.child_offsets(step))[None]  # (BK, 8, 3, 3)
        d = sstep / 4.0
        offs = be.asarray(np.array([[-d, -d], [d, -d], [-d, d], [d, d]], np.float32))
        cht = part.reshape(-1, 1, 2) + offs[None]  # (BK, 4, 2)
        P = be.extract_slices(F, chR.reshape(-1, 3, 3), kx[:m], ky[:m], self.pad).reshape(B * K, 8, m)
        ph = fourier.shift_phases(kx[:m], ky[:m], cht, self.box, xp).reshape(B, K, 4, m)
        Xs = (X[:, None, None, :m] * ph).reshape(B * K, 4, m)
        w = xp.repeat(C[:, :m] * inv_s2[None, :m], K, axis=0)  # (BK, m)
        Y = xp.conj(Xs) * w[:, None, :]
        cross = xp.real(Y @ xp.transpose(P, (0, 2, 1)))  # (BK, 4, 8): batched GEMM
        norm = ((xp.abs(P) ** 2) * (w * xp.repeat(C[:, :m], K, axis=0))[:, None, :]).sum(axis=2)  # (BK, 8)
        ll = (2.0 * cross - norm[:, None, :]).reshape(B, K * 32)
        order = xp.argsort(-ll, axis=1)[:, :keep]
        # candidate index c = ((parent * 4) + shift_child) * 8 + rot_child
        par = order // 32
        sc = (order % 32) // 8
        rc = order % 8
        bidx = xp.arange(B)[:, None]
        Rn = chR.reshape(B, K, 8, 3, 3)[bidx, par, rc]
        tn = cht.reshape(B, K, 4, 2)[bidx, par, sc]
        return Rn, tn, xp.take_along_axis(ll, order, 1)


@dataclass
class _Level0:
    """What every part of a batch shares in one search: the model, the noise, level 0's slices and grid."""

    F: object
    inv_s2: object
    kx: np.ndarray
    ky: np.ndarray
    r: float
    radii: list
    Rg: object
    shifts: object
    s_step: float
    m0: int
    K: int
    M: int
    T: float
    n_keep: int
    return_ll0: bool
    ph0: object
    P0r: object
    P0n: object
