"""Stochastic-gradient-descent ab-initio reconstruction of one particle set
(docs/design.rst, "The algorithm, one half").

The model is a real-space density; its padded Fourier transform G (pre-compensated for trilinear gridding)
is what slices are cut from. One iteration:

1. draw a minibatch (random order, epoch by epoch), normalise the images from their background and take
   their transforms at the current Fourier radius;
2. search poses coarse-to-fine (:mod:`search`) with the per-shell noise model and the annealing temperature;
3. back-project the posterior-weighted, CTF-weighted images (B = sum w C X / s2) and the curvature
   (W = sum w C^2 / s2); each image's w also carries its junk weight and its outlier weight (:mod:`outliers`:
   an image that leaves far more power unexplained than its batch, a bright contaminant, counts less);
4. preconditioned step: H <- (1 - lr) H + W ; G <- G + (B - W G) / (H + lambda). This is the online
   (exponentially forgetting) weighted mean of minibatch reconstructions; lr = 1 jumps to the minibatch's
   own reconstruction, lr -> 0 averages ever more minibatches; every voxel gets its own step size;
5. real-space constraints: background to zero, non-negativity, soft spherical window, re-centring, low-pass
   at the current radius;
6. noise model: per-shell s2 from the residuals at the best poses (running average with a prior weight;
   the outliers' residuals left out).

Working box: the model, its curvature and every per-iteration volume operation live in a box Dw <= D that
follows the current radius (``fourier.working_box``): the same physical extent at a coarser voxel, whose
padded transform is the centre of the full box's (frequency index k is the same frequency in both). It
grows, never shrinks, as the radius grows; the images stay at the full box (their points within r are
all the search reads), and the final pass reconstructs at the full box.

Schedules (CryoSPARC defaults as starting point): resolution fixed at the initial resolution for
``init_iters`` iterations (annealing: the temperature T decays from T0 to 1, T0 chosen so that the median
3D ESS is ``target_ess_fraction`` of the base grid), then the Fourier radius grows by ``radius_step`` per
iteration to the maximum resolution, then ``final_iters`` iterations there. Minibatch size switches from
``init_minibatch`` to ``final_minibatch`` at ``minibatch_switch_iter``. The learning rate is ``init_lr`` for
``lr_duration`` iterations, then decays as 1/t to ``final_lr``.
"""
from __future__ import annotations

import pickle
import time

import numpy as np

from . import classes, fourier, names, outliers, posterior, refine, schedule, starts, symmetry
from .backend import get_backend
from .noise import initial_noise, shell_index, updated_noise
from .params import SGDParams  # noqa: F401 (the parameters of SGDRun, re-exported)
from .reconstruct import (
    FINAL_REGULARISER,
    UPDATE_REGULARISER,
    backproject,
    image_points,
    normalise_in_place,
    preconditioned_update,
)
from .search import PoseSearch, base_rotations

# The model window's soft edge: this fraction of the box (at least 2 voxels of the full box).
WINDOW_EDGE_FRACTION = 0.08
# Re-centring on the centre of mass only when it is off by more than this many working voxels; smaller
# offsets are left alone (each re-centring is a pass through Fourier space of the whole model).
RECENTRE_MIN_VOXELS = 0.25


class SGDRun:
    """State and iterations of one half's SGD reconstruction (checkpointable)."""

    def __init__(self, particles, idx: np.ndarray, params: SGDParams, backend="cpu", name="A",
                 rng_seed: int | None = None, start: int = 0):
        self.p = params
        self.start = start  # which of the job's random starts of this half (log entries carry it)
        self.data = particles
        self.idx = np.asarray(idx, dtype=np.int64)  # particle indices (into `particles`) of this half
        self.name = name
        self.be = get_backend(backend) if isinstance(backend, str) else backend
        self.box = D = particles.box
        self.apix = particles.apix
        mask_d = params.mask_diameter_A or names.AUTO_MASK_FRACTION * D * self.apix
        self.rp = 0.5 * mask_d / self.apix  # particle/window radius, px
        self.r_init, self.r_max = schedule.radii(params, D, self.apix)
        self.n_iters = schedule.iterations(params, D, self.apix)
        self.rng = np.random.default_rng(params.seed if rng_seed is None else rng_seed)
        self.sym = symmetry.operators(params.symmetry)  # the point group (identity alone in C1)
        r_lo = D * self.apix / params.min_align_res_A if params.min_align_res_A > 0 else 0.0
        self.searcher = PoseSearch(D, self.rp, params.max_shift_frac * D, params.top_k, self.be, params.pad,
                                   base=symmetry.asymmetric_unit(base_rotations(), self.sym), min_radius=r_lo)
        # model state: the random start is drawn at the full box (the same draws for a seed as without the
        # working box; drawn in the working box instead, 2 of 6 seeds of test_sgd's case failed against 1 of 6:
        # random starts still decide some runs, docs/design.rst), then cropped
        self._set_working_box(fourier.working_box(self.r_init, D))
        vol = starts.random_initial_model(D, self.rp, self.r_init, self.rng, self.sym)
        # No rescaling: the random start projects to well under 1% of the images' power at the initial
        # radius (box 64, SNR 0.01-0.05), so the first posteriors are broad and the first preconditioned
        # updates set the model's scale from the data.
        self.set_model_volume(vol)
        Dp = params.pad * self.Dw
        self.H = np.zeros((Dp, Dp, Dp), np.float32)
        self.kx, self.ky = fourier.half_plane_points(self.r_max)
        self.shell = shell_index(self.kx, self.ky)
        self.s2_shell = None  # per-shell noise variance, set from the first minibatch
        self.s2_count = 0.0
        self.T0 = None
        self.iteration = 0
        n = len(self.idx)
        self.order = self.rng.permutation(n)
        self.cursor = 0
        self.seen = np.zeros(n, bool)
        self.R = np.tile(np.eye(3, dtype=np.float32), (n, 1, 1))
        self.t = np.zeros((n, 2), np.float32)
        # per-particle scores of the latest pose assignment: log marginal likelihood ratio against noise
        # only (search.SearchResult.evidence) and the best pose's posterior probability
        self.loglik = np.full(n, np.nan, np.float32)
        self.maxprob = np.full(n, np.nan, np.float32)
        # ... and its outlier weight (engine/outliers.py: 1 unless the image left far more power unexplained
        # than its batch)
        self.outlier_w = np.ones(n, np.float32)
        # ... and the robust z score behind it (outliers.robust_z; written as rlnParticleSelectZScore)
        self.outlier_z = np.full(n, np.nan, np.float32)
        self.log: list[dict] = []
        # the junk classes (engine/classes.py): runs of their own random starts, stepped by this one
        self.junk = classes.junk_runs(self, particles, rng_seed)
        self.class_prior = classes.initial_prior(1 + len(self.junk))
        self.pclass = np.full((n, 1 + len(self.junk)), np.nan, np.float32)  # the latest class posteriors

    # ------------------------------------------------------------------------------ working box
    def _set_working_box(self, Dw: int):
        """Sizes and grids of working box Dw (the model itself is moved by :meth:`set_working_radius`)."""
        D, pad = self.box, self.p.pad
        self.Dw = int(Dw)
        Dp = pad * self.Dw
        f = self.Dw / D  # working voxels per full-box voxel
        self.window = fourier.soft_edge(fourier.radial_index((self.Dw,) * 3), self.rp * f,
                                        max(1.0, max(2.0, WINDOW_EDGE_FRACTION * D) * f))
        self.acc = self.be.accumulator(Dp)

    def set_working_radius(self, r: float):
        """Grow the working box (model and curvature) so that radius r fits; never shrinks it."""
        Dw = fourier.working_box(r, self.box)
        if Dw <= self.Dw:
            return
        vol = fourier.resample_volume(self._working_volume(), Dw)
        self.H = fourier.embed_centred(self.H, self.p.pad * Dw)
        self._set_working_box(Dw)
        self._set_working_volume(vol)

    def _working_volume(self) -> np.ndarray:
        """Real-space model at the working box (the full box's values, band-limited to the working box)."""
        Dw, pad = self.Dw, self.p.pad
        # G is the centre of the full box's transform, a sum over (D/Dw)^3 times more voxels
        scale = (Dw / self.box) ** 3
        return fourier.padded_inverse(self.G, Dw) * (fourier.gridding_correction(Dw, pad) * np.float32(scale))

    def _set_working_volume(self, vol: np.ndarray):
        self.G = fourier.volume_to_fourier(vol * (self.box / self.Dw) ** 3, self.p.pad)

    # ------------------------------------------------------------------------------ schedules
    def radius_at(self, it: int) -> float:
        return schedule.radius_at(self.p, self.r_init, self.r_max, it)

    def minibatch_at(self, it: int) -> int:
        return schedule.minibatch_at(self.p, it)

    def lr_at(self, it: int) -> float:
        return schedule.lr_at(self.p, it)

    def temperature_at(self, it: int) -> float:
        return schedule.temperature_at(self.p, self.T0, it)

    @property
    def done(self) -> bool:
        return self.iteration >= self.n_iters

    # ------------------------------------------------------------------------------ data
    def batch_points(self, sel: np.ndarray, r: float):
        """Image values X, CTF C at the half-plane points within radius r for local indices ``sel``."""
        m = fourier.n_points_within(self.kx, self.ky, r)
        X, C = image_points(self.data, self.idx[sel], self.rp, self.kx[:m], self.ky[:m])
        return X, C, m

    def next_batch(self, size: int) -> np.ndarray:
        out = []
        while size > 0:
            take = self.order[self.cursor:self.cursor + size]
            out.append(take)
            size -= len(take)
            self.cursor += len(take)
            if self.cursor >= len(self.order):
                self.order = self.rng.permutation(len(self.idx))
                self.cursor = 0
        return np.concatenate(out)

    def noise_per_point(self, m: int, s2_shell: np.ndarray | None = None) -> np.ndarray:
        """Noise variance at the first m points, from this run's per-shell model or from ``s2_shell``."""
        return (self.s2_shell if s2_shell is None else s2_shell)[self.shell[:m]].astype(np.float32)

    # ------------------------------------------------------------------------------ iteration
    def step(self) -> dict:
        t0 = time.time()
        it = self.iteration
        r = self.radius_at(it)
        self.set_working_radius(r)
        sel = self.next_batch(self.minibatch_at(it))
        X, C, m = self.batch_points(sel, r)
        kx, ky = self.kx[:m], self.ky[:m]
        if self.s2_shell is None:
            self.s2_shell, self.s2_count = initial_noise(self.shell, X, m), self.p.noise_prior_images
        s2 = self.noise_per_point(m)
        if self.T0 is None:
            self.T0 = self._choose_temperature(X, C, s2, r)
        T = self.temperature_at(it)
        G = self.be.asarray(self.G)  # the model on the device once per iteration (search + noise update)
        res = self.searcher.search(G, X, C, s2, kx, ky, r, temperature=T, n_keep=self.p.n_backproject,
                                   n_samples=self.p.n_samples, rng=self.rng)
        pc, rj = classes.search_junk(self, res, X, C, s2, kx, ky, r, T)  # (None, []) with one class
        t1 = time.time()
        ow, oz = self._outlier_weights(X, self.searcher.band(s2, kx, ky), res)
        self._remember(sel, res, ow, oz, pc)
        self.seen[sel] = True
        # back-projection of posterior-weighted images and curvature
        Xc, Bv, Wv = self._backproject(res, X, C, s2, kx, ky, ow, None if pc is None else pc[0])
        # noise update from the residuals at the best pose at radius r
        Pbest = self.be.to_host(self.be.extract_slices(G, res.R[:, 0], kx, ky, self.p.pad))
        fit = ow >= outliers.OUTLIER_BELOW  # outliers' residuals are not noise
        if pc is not None:  # ... nor are the residuals of the images a junk class explains best
            fit &= np.argmax(pc, axis=0) == 0
        self.s2_shell, self.s2_count = updated_noise(self.s2_shell, self.s2_count, self.shell,
                                                     np.abs(Xc[fit] - C[fit] * Pbest[fit]) ** 2, m)
        lr = self.lr_at(it)
        self._apply_update(Bv, Wv, lr, r)
        classes.update_junk(self, rj, pc, X, C, s2, kx, ky, lr, r)
        t2 = time.time()
        self.iteration += 1
        entry = dict(half=self.name, start=self.start, iteration=it, radius=float(r),
                     resolution_A=float(self.box * self.apix / r),
                     minibatch=int(len(sel)), ess=float(np.median(res.ess)), temperature=float(T),
                     lr=float(lr), seen=int(self.seen.sum()), t_search=t1 - t0, t_update=t2 - t1,
                     seconds=t2 - t0)
        if self.junk:
            entry["class_occupancy"] = [float(x) for x in self.class_prior]
        self.log.append(entry)
        return entry

    def last_radius(self) -> float:
        """The Fourier radius of the latest iteration (the radius the model was last updated at)."""
        return self.radius_at(max(self.iteration - 1, 0))

    def evidence(self, X, C, m: int, s2_shell: np.ndarray) -> np.ndarray:
        """Log marginal likelihood ratio per image (model against noise alone; poses marginalised, T = 1) of
        image points X, C (:meth:`batch_points` at :meth:`last_radius`) with the per-shell noise ``s2_shell``:
        the score that compares random starts of one half on the same images."""
        r = self.last_radius()
        res = self.searcher.search(self.be.asarray(self.G), X, C, self.noise_per_point(m, s2_shell),
                                   self.kx[:m], self.ky[:m], r, n_keep=1, n_samples=0)
        return np.asarray(res.evidence, np.float64)

    def _outlier_weights(self, X, s2, res) -> tuple[np.ndarray, np.ndarray]:
        """Outlier weights (B,) of a batch's images from their search (:mod:`outliers`; all 1 with
        ``outlier_weighting`` off) and their robust z scores (B,), which are kept as a score either way."""
        z = outliers.robust_z(outliers.unexplained_power(X, s2, res.ll_best))
        if not self.p.outlier_weighting:
            return np.ones(len(X), np.float32), z.astype(np.float32)
        return outliers.weights_from_z(z).astype(np.float32), z.astype(np.float32)

    def _backproject(self, res, X, C, s2, kx, ky, ow, pk=None, acc=None):
        """Back-project a batch (posterior-weighted images and curvature) into ``acc`` (default: this run's,
        reset first): its images centred at their best poses, and with this run's accumulator its sums B, W.
        ``pk``: the images' probabilities of this class (junk classes); those that hardly belong to it are
        left out."""
        w = self._image_weights(res, ow, pk)
        keep = None if pk is None else pk >= classes.MIN_CLASS_WEIGHT
        own = acc is None
        acc = self.acc if own else acc
        if own:
            acc.reset()
        if keep is None:
            Xc = backproject(acc, res, X, C, s2, kx, ky, self.box, self.p.pad, w, self.sym)
        else:  # the images left out are not centred (zero): no residual of theirs is read
            Xc = np.zeros((len(X), X.shape[1]), np.complex64)
        if keep is not None and keep.any():
            Xc[keep] = backproject(acc, classes.subset(res, keep), X[keep], C[keep], s2, kx, ky, self.box,
                                   self.p.pad, w[keep], self.sym)
        if not own:
            return Xc
        Bv, Wv = (self.be.to_host(a) for a in acc.result())
        return Xc, Bv, Wv

    def _remember(self, sel, res, ow, oz, pc=None):
        """Best pose and scores of images ``sel`` from their latest search (``ow``: outlier weights, ``oz``:
        their z scores, ``pc``: their class posteriors (K, B) with junk classes)."""
        self.R[sel] = res.R[:, 0]
        self.t[sel] = res.t[:, 0]
        self.loglik[sel] = res.evidence
        self.maxprob[sel] = res.w[:, 0]
        self.outlier_w[sel] = ow
        self.outlier_z[sel] = oz
        if pc is not None:
            self.pclass[sel] = pc.T

    def _image_weights(self, res, ow, pk=None) -> np.ndarray:
        """Back-projection weights (B, n): pose posteriors times the outlier weights ``ow`` (B,), times the
        class probabilities ``pk`` (B,) with junk classes, times P(model explains the image) when asked.

        With prior odds 1:1 between "the model explains the image" and "noise alone does", the posterior
        probability is sigmoid(evidence). A good particle has evidence >> 0 (weight ~1), an image of ice
        ~0 (weight ~1/2); while the model explains nothing every image has ~1/2, which changes nothing in
        the (normalised) update.
        """
        w = res.w * ow[:, None]
        if pk is not None:
            w = w * pk[:, None]
        if not self.p.junk_weighting:
            return w.astype(np.float32)
        pw = 1.0 / (1.0 + np.exp(-np.clip(res.evidence.astype(np.float64), -50, 50)))
        return (w * pw[:, None]).astype(np.float32)

    def _choose_temperature(self, X, C, s2, r) -> float:
        """Annealing start: the temperature at which the median 3D ESS is the target fraction of the grid."""
        n_rot = len(self.searcher.base)  # the rotations searched (one asymmetric unit with a symmetry)
        target = self.p.target_ess_fraction * n_rot
        sub = slice(0, min(len(X), 32))
        _, ll0 = self.searcher.search(self.G, X[sub], C[sub], s2, self.kx[:X.shape[1]], self.ky[:X.shape[1]],
                                      r, return_ll0=True)  # (b, S, nR) at T=1
        return posterior.temperature_for_ess(ll0, target)

    def _apply_update(self, Bv, Wv, lr: float, r: float):
        """Preconditioned step in Fourier space, then real-space constraints."""
        preconditioned_update(self.G, self.H, Bv, Wv, lr, self.p.pad, self.box, UPDATE_REGULARISER)
        self._constrain(r)

    def model_volume(self) -> np.ndarray:
        """Real-space model at the full box (the working box's map, Fourier-padded)."""
        return fourier.resample_volume(self._working_volume(), self.box)

    def set_model_volume(self, vol: np.ndarray):
        """Set the model from a full-box map (what lies beyond the working box's Nyquist is dropped)."""
        self._set_working_volume(fourier.resample_volume(vol, self.Dw))

    def _constrain(self, r: float):
        vol = self._working_volume()
        D = self.Dw
        outside = self.window < 1e-3
        if outside.any():
            vol -= np.median(vol[outside])  # the DC is not measured (ignored): background defines zero
        vol = np.maximum(vol, 0) * self.window
        # re-centre on the centre of mass (sub-pixel, through Fourier phases)
        tot = vol.sum()
        shift = None
        if tot > 0:
            g = np.arange(D) - D // 2
            com = np.array([(vol.sum(axis=(0, 1)) * g).sum(), (vol.sum(axis=(0, 2)) * g).sum(),
                            (vol.sum(axis=(1, 2)) * g).sum()]) / tot  # (x, y, z)
            if np.abs(com).max() > RECENTRE_MIN_VOXELS:
                shift = -com
        vol = fourier.lowpass_volume(vol, r + 1.0, width=2.0, shift=shift)  # the shift in the same transform
        self.set_model_volume(vol)

    # ------------------------------------------------------------------------------ finish
    def final_pass(self, batch: int = 128, progress=None) -> np.ndarray:
        """Final poses of every seen particle against the final model, and the half-map.

        Poses are searched at the maximum resolution (T = 1); the map is the direct Fourier reconstruction
        B / (W + lambda) from the posterior-weighted poses out to Nyquist - 1 (information beyond the
        maximum resolution was never used for alignment), gridding-corrected.
        """
        D, pad = self.box, self.p.pad
        self.set_working_radius(self.r_max)  # the search's model (the reconstruction is at the full box)
        rfull = D / 2 - 1
        kxf, kyf = fourier.half_plane_points(rfull)
        shf = np.minimum(shell_index(kxf, kyf), len(self.s2_shell) - 1)
        s2f = self.s2_shell[shf].astype(np.float32)
        m_search = fourier.n_points_within(kxf, kyf, self.r_max)
        acc = self.be.accumulator(pad * D)
        s2a = self.searcher.band(s2f[:m_search], kxf, kyf)  # the points the pose likelihood sees
        sel_all = np.flatnonzero(self.seen)
        G = self.be.asarray(self.G)
        for j in self.junk:
            j.set_working_radius(self.r_max)
        for a in range(0, len(sel_all), batch):
            sel = sel_all[a:a + batch]
            X, C = image_points(self.data, self.idx[sel], self.rp, kxf, kyf)
            res = self.searcher.search(G, X[:, :m_search], C[:, :m_search], s2f[:m_search],
                                       kxf, kyf, self.r_max, n_keep=self.p.n_backproject, top_k=self.p.final_top_k)
            if self.p.final_refine:
                res.R[:, 0], res.t[:, 0], _ = refine.refine_poses(
                    self.be, G, X[:, :m_search], C[:, :m_search], s2a, kxf, kyf, res.R[:, 0], res.t[:, 0], D, pad)
            pc, _ = classes.search_junk(self, res, X[:, :m_search], C[:, :m_search], s2f[:m_search], kxf, kyf,
                                        self.r_max, 1.0, final=True)
            # the outlier test on the searched points, as in the SGD
            ow, oz = self._outlier_weights(X[:, :m_search], s2a, res)
            self._remember(sel, res, ow, oz, pc)
            self._backproject(res, X, C, s2f, kxf, kyf, ow, None if pc is None else pc[0], acc=acc)
            if progress is not None:
                progress(self, min(a + batch, len(sel_all)), len(sel_all))
        Bv, Wv = (self.be.to_host(a) for a in acc.result())
        del acc  # on a GPU its device arrays go now (Bv, Wv are host copies there)
        Fr = normalise_in_place(Bv, Wv, D, pad, rfull, FINAL_REGULARISER)
        del Bv, Wv
        return fourier.fourier_to_volume(Fr, D, pad)

    def apply_alignment(self, aln, transform_map, transform_poses):
        """Move this half into another frame: model, curvature and poses (see :mod:`align`)."""
        vol = transform_map(self.model_volume(), aln)
        self.set_model_volume(vol)
        rot_only = type(aln)(R=aln.R, shift=np.zeros(3), flip=aln.flip, score=aln.score)
        self.H = np.maximum(transform_map(self.H, rot_only), 0).astype(np.float32)
        Rn, on = transform_poses(self.R.astype(np.float64), self.t.astype(np.float64) * self.apix, aln,
                                 self.apix)
        self.R = np.asarray(Rn, np.float32)
        self.t = (np.asarray(on) / self.apix).astype(np.float32)

    # ------------------------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict:
        return dict(G=self.G, H=self.H, s2_shell=self.s2_shell, s2_count=self.s2_count,
                    T0=np.nan if self.T0 is None else self.T0, iteration=self.iteration, order=self.order,
                    cursor=self.cursor, seen=self.seen, R=self.R, t=self.t, idx=self.idx,
                    loglik=self.loglik, maxprob=self.maxprob, outlier_w=self.outlier_w, outlier_z=self.outlier_z,
                    rng_state=np.frombuffer(pickle.dumps(self.rng.bit_generator.state), np.uint8),
                    **classes.state(self))

    def load_state(self, st: dict):
        G = np.ascontiguousarray(st["G"], np.complex64)
        self._set_working_box(G.shape[0] // self.p.pad)  # checkpoints hold the working box's state
        self.G = G
        self.H = np.ascontiguousarray(st["H"], np.float32)
        s2 = st["s2_shell"]
        self.s2_shell = s2 if s2 is not None and np.ndim(s2) else None
        self.s2_count = float(st["s2_count"])
        self.T0 = None if np.isnan(float(st["T0"])) else float(st["T0"])
        self.iteration = int(st["iteration"])
        self.order = np.asarray(st["order"])
        self.cursor = int(st["cursor"])
        self.seen = np.asarray(st["seen"], bool)
        self.R = np.asarray(st["R"], np.float32)
        self.t = np.asarray(st["t"], np.float32)
        if "loglik" in st:  # checkpoints written before the scores existed resume without them
            self.loglik = np.asarray(st["loglik"], np.float32)
            self.maxprob = np.asarray(st["maxprob"], np.float32)
        if "outlier_w" in st:  # ... and before the outlier weights
            self.outlier_w = np.asarray(st["outlier_w"], np.float32)
        if "outlier_z" in st:  # ... and before their z scores
            self.outlier_z = np.asarray(st["outlier_z"], np.float32)
        self.rng.bit_generator.state = pickle.loads(np.asarray(st["rng_state"]).tobytes())
        classes.load_state(self, st)
