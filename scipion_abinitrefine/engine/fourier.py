"""Fourier helpers shared by the engine.

Convention: centred transforms. ``ft2c(img)[..., D//2, D//2]`` is the DC term; array index j along an
axis is frequency index (j - D//2), i.e. (j - D//2)/(D*apix) in 1/A. Volumes are (z, y, x).
Images live in the engine as values on a list of half-plane frequency points (kx, ky) (Friedel mates
implied, DC excluded): see :func:`half_plane_points`.
"""
from __future__ import annotations

import functools

import numpy as np
import scipy.fft as sfft

_WORKERS = -1  # all cores, until threads.limit sets the job's count


def set_workers(n: int):
    global _WORKERS
    _WORKERS = int(n)


def get_workers() -> int:
    return _WORKERS


def ft2c(img: np.ndarray) -> np.ndarray:
    """Centred 2D FFT over the last two axes (complex64 for float32 input)."""
    return sfft.fftshift(sfft.fft2(sfft.ifftshift(img, axes=(-2, -1)), workers=_WORKERS), axes=(-2, -1))


def ift2c(F: np.ndarray) -> np.ndarray:
    return sfft.fftshift(sfft.ifft2(sfft.ifftshift(F, axes=(-2, -1)), workers=_WORKERS), axes=(-2, -1))


def ft3c(vol: np.ndarray) -> np.ndarray:
    return sfft.fftshift(sfft.fftn(sfft.ifftshift(vol), workers=_WORKERS))


def ift3c(F: np.ndarray) -> np.ndarray:
    return sfft.fftshift(sfft.ifftn(sfft.ifftshift(F), workers=_WORKERS))


def radial_index(shape) -> np.ndarray:
    """Distance (in frequency index units) of every voxel/pixel of a centred grid from its centre."""
    # broadcast 1-D squares (no full-size integer grids: a (512)^3 padded box would take GBs)
    sq = 0.0
    for ax, n in enumerate(shape):
        g = (np.arange(n, dtype=np.float64) - n // 2) ** 2
        sq = sq + g.reshape([-1 if i == ax else 1 for i in range(len(shape))])
    return np.sqrt(sq)


def half_plane_points(radius: float, rmin: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Integer frequency points (kx, ky) with rmin < |k| <= radius on a half plane.

    Half plane: kx > 0, or kx == 0 and ky > 0. The full plane minus DC is exactly this set and its
    negatives, so sums over the plane are 2 * Re(sum over these points). Sorted by radius so a prefix is
    a lower-resolution point set (coarse-to-fine search takes prefixes).
    """
    r = int(np.ceil(radius))
    ky, kx = np.meshgrid(np.arange(-r, r + 1), np.arange(0, r + 1), indexing="ij")
    kx, ky = kx.ravel(), ky.ravel()
    rr = np.sqrt(kx * kx + ky * ky)
    keep = (rr <= radius) & (rr > rmin) & ((kx > 0) | ((kx == 0) & (ky > 0)))
    kx, ky, rr = kx[keep], ky[keep], rr[keep]
    order = np.lexsort((ky, kx, rr))
    return kx[order].astype(np.int32), ky[order].astype(np.int32)


def n_points_within(kx, ky, radius: float) -> int:
    """Number of leading points of a radius-sorted point list that lie within ``radius``."""
    return int(np.searchsorted(np.sqrt(kx.astype(np.float64) ** 2 + ky.astype(np.float64) ** 2),
                               radius, side="right"))


def image_points(img: np.ndarray, kx, ky) -> np.ndarray:
    """``gather_points(ft2c(img), kx, ky)`` for half-plane points (kx >= 0), without the full centred
    transform: a real FFT, the points read at their wrapped indices, and the centring (the image's centre
    pixel D//2 is the origin) as the sign (-1)^(kx + ky). complex64 (n, m)."""
    D = img.shape[-1]
    F = sfft.rfft2(np.asarray(img, np.float32), workers=_WORKERS)
    k = np.asarray(kx) + np.asarray(ky)
    # the centre's phase exp(2 pi i k (D//2) / D): exactly (-1)^k for an even box
    ph = np.where(k % 2, -1.0, 1.0) if D % 2 == 0 else np.exp(2j * np.pi * k * (D // 2) / D)
    return (F[:, np.asarray(ky) % D, kx] * ph.astype(F.dtype)).astype(np.complex64, copy=False)


def gather_points(F2: np.ndarray, kx, ky) -> np.ndarray:
    """Values of centred 2D transforms F2 (n, D, D) at points (kx, ky) -> (n, n_points)."""
    D = F2.shape[-1]
    return F2[:, ky + D // 2, kx + D // 2]


def shift_phases(kx, ky, shifts_px, box: int, xp=np):
    """Phase factors exp(-2 pi i k.s / D) that shift an image by s=(sx, sy) pixels -> (n_shift, n_pts).

    Computed in float32 in the array module ``xp`` (numpy or CuPy; host inputs are copied over): the
    phase argument stays below ~2 pi D, where float32's error is < 1e-4 rad.
    """
    s = xp.asarray(shifts_px, dtype=np.float32).reshape(-1, 2)
    kx = xp.asarray(kx, dtype=np.float32)
    ky = xp.asarray(ky, dtype=np.float32)
    arg = (-2.0 * np.pi / box) * (s[:, 0:1] * kx[None, :] + s[:, 1:2] * ky[None, :])
    return (xp.cos(arg) + 1j * xp.sin(arg)).astype(np.complex64)


def crop_fourier_2d(F2: np.ndarray, new_box: int) -> np.ndarray:
    """Crop centred 2D transforms to a smaller box (Fourier binning)."""
    D = F2.shape[-1]
    a = D // 2 - new_box // 2
    return F2[..., a:a + new_box, a:a + new_box]


def resample_volume(vol: np.ndarray, new_box: int) -> np.ndarray:
    """Fourier crop (new_box < box) or zero-pad (new_box > box) a real cubic map, keeping its values.

    Same physical extent, voxel size box/new_box times the old: the centred transform's frequency index k
    is the same physical frequency in both boxes. A crop drops everything beyond new_box/2, a pad adds
    nothing; cropping a map band-limited below new_box/2 and padding it back gives it back exactly.
    """
    D = vol.shape[0]
    if new_box == D:
        return np.asarray(vol, np.float32).copy()
    G = embed_centred(ft3c(np.asarray(vol, np.float32)), new_box)
    return (ift3c(G).real * (new_box / D) ** 3).astype(np.float32)


def embed_centred(A: np.ndarray, new_size: int) -> np.ndarray:
    """Centred crop or zero-pad of a centred cubic Fourier-space array (index k stays index k)."""
    n = A.shape[0]
    if new_size == n:
        return A.copy()
    if new_size < n:
        a = n // 2 - new_size // 2
        return A[a:a + new_size, a:a + new_size, a:a + new_size].copy()
    out = np.zeros((new_size,) * 3, A.dtype)
    a = new_size // 2 - n // 2
    out[a:a + n, a:a + n, a:a + n] = A
    return out


def working_box(radius: float, box: int, margin: float = 0.25, extra: float = 4.0) -> int:
    """The smallest FFT-friendly even box whose Nyquist clears ``radius`` by ``margin`` x radius + ``extra``
    (the model's soft low-pass edge and the interpolation's neighbours), at most ``box``."""
    need = 2 * int(np.ceil((1.0 + margin) * radius + extra))
    n = need
    while n < box and (n % 2 or sfft.next_fast_len(n) != n):
        n += 1
    return int(min(n, box))


@functools.lru_cache(maxsize=4)
def gridding_correction(box: int, pad: int) -> np.ndarray:
    """sinc^2 real-space attenuation of trilinear interpolation in a padded (pad*box) transform (read-only:
    kept between calls, the SGD asks for it twice per iteration and a box-128 grid costs 35 ms)."""
    r = radial_index((box, box, box)) / (pad * box)
    s = np.sinc(r)  # numpy sinc is sin(pi x)/(pi x)
    out = np.maximum(s * s, 1e-2).astype(np.float32)
    out.flags.writeable = False
    return out


def volume_to_fourier(vol: np.ndarray, pad: int = 2) -> np.ndarray:
    """Real map (D^3) -> padded centred transform (pD)^3 complex64, pre-corrected for trilinear gridding."""
    D = vol.shape[0]
    return padded_transform(vol / gridding_correction(D, pad), pad)


def fourier_to_volume(F: np.ndarray, box: int, pad: int = 2) -> np.ndarray:
    """Padded centred transform -> real map (box^3), gridding-corrected, float32."""
    return (padded_inverse(F, box) / gridding_correction(box, pad)).astype(np.float32)


def _map_positions(D: int, Dp: int) -> np.ndarray:
    """Where a centred map's indices 0 .. D - 1 lie along a standard-order (origin at 0) axis of Dp."""
    return (np.arange(D) - D // 2) % Dp


def padded_transform(vol: np.ndarray, pad: int = 2) -> np.ndarray:
    """``ft3c`` of ``vol`` (D^3) centred in a zero (pad D)^3 box: complex64 (pad D)^3, centred.

    A real transform one axis at a time, each over only the rows that are not all zero yet (7/8 of the
    padded box is zero before the first axis, 3/4 before the second): ~3.5 D^2 row transforms where the
    whole complex box takes 12 D^2, then the other half of the spectrum from Hermitian symmetry
    (``kernels_cpu.hermitian_to_centred``). The same values as ``ft3c`` of the padded map to float32
    rounding (``testing.kernels_ref.padded_transform_ref``)."""
    from . import kernels_cpu

    D = vol.shape[0]
    Dp = pad * D
    if Dp % 2:
        return _padded_transform_full(vol, pad)
    p = _map_positions(D, Dp)
    A = np.zeros((D, D, Dp), np.float32)
    A[:, :, p] = vol
    A = sfft.rfft(A, axis=2, workers=_WORKERS)
    B = np.zeros((D, Dp, A.shape[2]), np.complex64)
    B[:, p, :] = A
    del A
    B = sfft.fft(B, axis=1, workers=_WORKERS, overwrite_x=True)
    H = np.zeros((Dp, Dp, B.shape[2]), np.complex64)
    H[p] = B
    del B
    H = sfft.fft(H, axis=0, workers=_WORKERS, overwrite_x=True)
    G = np.empty((Dp, Dp, Dp), np.complex64)
    kernels_cpu.hermitian_to_centred(kernels_cpu.as_float_view(H), kernels_cpu.as_float_view(G))
    return G


def _padded_transform_full(vol, pad):
    D = vol.shape[0]
    Dp = pad * D
    big = np.zeros((Dp, Dp, Dp), dtype=np.float32)
    a = Dp // 2 - D // 2
    big[a:a + D, a:a + D, a:a + D] = vol
    return ft3c(big).astype(np.complex64, copy=False)


def padded_inverse(F: np.ndarray, box: int) -> np.ndarray:
    """The centred box^3 of ``ift3c(F).real`` for a padded centred transform F of a real map (float32).

    Only the half spectrum is read (``kernels_cpu.centred_to_hermitian``), and each axis's inverse keeps only
    the rows the crop needs before the next: ~3.5 box^2 row transforms against 12 box^2 for the whole
    padded box, and no full-size complex output (1 GB at box 256, padded)."""
    from . import kernels_cpu

    Dp = F.shape[0]
    if Dp % 2:
        out = sfft.ifftn(sfft.ifftshift(F), workers=_WORKERS)
        idx = _map_positions(box, Dp)
        return out[np.ix_(idx, idx, idx)].real.astype(np.float32)
    p = _map_positions(box, Dp)
    H = np.empty((Dp, Dp, Dp // 2 + 1), np.complex64)
    kernels_cpu.centred_to_hermitian(kernels_cpu.as_float_view(np.ascontiguousarray(F, np.complex64)),
                                     kernels_cpu.as_float_view(H))
    H = sfft.ifft(H, axis=0, workers=_WORKERS, overwrite_x=True)[p]
    H = sfft.ifft(H, axis=1, workers=_WORKERS, overwrite_x=True)[:, p]
    return sfft.irfft(H, n=Dp, axis=2, workers=_WORKERS)[:, :, p].astype(np.float32, copy=False)


def lowpass_volume(vol: np.ndarray, radius: float, width: float = 3.0, shift=None) -> np.ndarray:
    """Soft (raised cosine) low-pass of a real cubic map at Fourier radius ``radius`` (index units), after
    shifting it by ``shift`` (x, y, z) voxels (Fourier phases; none by default). Real transforms in float32
    (the filter and the shift's phases are Hermitian: the same map as the complex transform's real part)."""
    D = vol.shape[0]
    F = sfft.rfftn(np.asarray(vol, np.float32), workers=_WORKERS)
    k = sfft.fftfreq(D, 1.0 / D).astype(np.float32)  # frequency index along the full axes
    kh = k[:F.shape[2]].copy()
    kh[-1] = abs(kh[-1])  # rfft's last frequency: +D/2 for even D (fftfreq gives -D/2)
    r = np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + kh[None, None, :] ** 2)
    F *= soft_edge(r, radius, width).astype(np.float32)
    if shift is not None:
        sx, sy, sz = (float(v) for v in shift)
        F *= np.exp(-2j * np.pi * kh * sx / D).astype(np.complex64)[None, None, :]
        F *= np.exp(-2j * np.pi * k * sy / D).astype(np.complex64)[None, :, None]
        F *= np.exp(-2j * np.pi * k * sz / D).astype(np.complex64)[:, None, None]
    return sfft.irfftn(F, s=vol.shape, workers=_WORKERS).astype(np.float32, copy=False)


def soft_edge(r, radius: float, width: float) -> np.ndarray:
    """1 inside radius, raised-cosine fall to 0 over ``width``."""
    t = np.clip((np.asarray(r) - radius) / max(width, 1e-6), 0.0, 1.0)
    return 0.5 * (1 + np.cos(np.pi * t))
