"""RELION particle STAR files: reading (3.1 with data_optics, and 3.0) with input checks, and writing 3.1.

Parsing uses ``emtable``. Every problem with the input raises :class:`ParticleInputError` whose message names
the file (and the particle row / image name / column / parameter involved) and says what to do about it.
Particle rows in messages are 1-based, counted in the particle table of the STAR file.
"""
from __future__ import annotations

import os

import numpy as np

from .ctf import CTFParams
from .mrc import ParticleInputError, _apix_unset, _stack_mmap, _StackCache
from .outdir import atomic
from .particles import _SCORE_COLUMNS, ParticleSet
from .star_table import _Columns, _read_block, _star_blocks

_APIX_REL_TOL = 0.01  # particles' (and stack headers') pixel sizes must agree to 1%


_CTF_HINT = {
    "rlnDefocusU": "run CTF estimation first / the particles need CTF parameters",
    "rlnDefocusV": "run CTF estimation first / the particles need CTF parameters",
    "rlnDefocusAngle": "run CTF estimation first / the particles need CTF parameters",
    "rlnVoltage": "add the acquisition parameters (voltage, spherical aberration, amplitude contrast) "
                  "to data_optics (RELION 3.1) or the particle table",
    "rlnSphericalAberration": "add the acquisition parameters (voltage, spherical aberration, amplitude "
                              "contrast) to data_optics (RELION 3.1) or the particle table",
    "rlnAmplitudeContrast": "add the acquisition parameters (voltage, spherical aberration, amplitude "
                            "contrast) to data_optics (RELION 3.1) or the particle table (typically 0.1)",
}


def _parse_image_name(name: str, star: str, row: int) -> tuple[int, str]:
    """'000012@path' -> (11, 'path'); 'path' -> (0, 'path') (a single image file)."""
    if "@" in name:
        num, path = name.split("@", 1)
        try:
            k = int(num)
        except ValueError:
            k = 0
        if k < 1 or not path:
            raise ParticleInputError(
                f"particle row {row + 1} of STAR file '{star}' has rlnImageName '{name}', which is not of "
                "the form 'N@stack.mrcs' with N >= 1 (1-based): fix the image names.")
        k -= 1
    else:
        k, path = 0, name
    for suffix in (":mrcs", ":mrc"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
    return k, path


def _resolve(raw: str, star_dir: str) -> str | None:
    """Absolute path of a stack named in a STAR file: STAR directory first, then the current directory."""
    if os.path.isabs(raw):
        return os.path.normpath(raw) if os.path.isfile(raw) else None
    for base in (star_dir, os.getcwd()):
        cand = os.path.normpath(os.path.join(base, raw))
        if os.path.isfile(cand):
            return cand
    return None


def read_star(path, check_images=True) -> ParticleSet:
    """Read a RELION 3.1 or 3.0 particle STAR file.

    Parameters
    ----------
    path : str or path-like
        The particle STAR file.
    check_images : bool
        Open every distinct stack once (memory map, header) and check stack indices, box sizes (equal,
        square) and the pixel size against the MRC header. Stack files must exist in any case.

    Returns
    -------
    ParticleSet
    """
    star = os.path.abspath(os.fspath(path))
    C = _particle_table(star)
    names, stack_index, stack_paths = _image_locations(C, star)
    ctf = _ctf(C, star)
    apix, apix_src = _star_pixel_size(C, star)
    star_box = _star_box(C, star)
    cache = _StackCache()
    if check_images:
        box, apix = _check_stacks(star, names, stack_index, stack_paths, star_box, apix, apix_src, cache)
    else:
        if apix is None:
            raise ParticleInputError(
                f"STAR file '{star}' gives no pixel size (no rlnImagePixelSize, nor rlnDetectorPixelSize and "
                "rlnMagnification): add rlnImagePixelSize (or read it with check_images=True to take the "
                "stack header's).")
        box = star_box
        if box is None:
            data, _ = _stack_mmap(stack_paths[0])
            box = int(data.shape[2])
            cache.put(stack_paths[0], data)
    ps = ParticleSet(image_names=np.array(names, dtype=object), stack_paths=stack_paths,
                     stack_index=stack_index, apix=apix, box=box, ctf=ctf, source_star=star,
                     **_poses_and_labels(C, star, apix, names))
    ps._cache = cache
    return ps


def _particle_table(star: str) -> _Columns:
    """The particle table of a STAR file (3.1: data_particles with data_optics; 3.0: the block with images)."""
    if not os.path.isfile(star):
        raise ParticleInputError(f"particle STAR file '{star}' does not exist: check the path to the "
                                 "particles STAR file.")
    blocks = _star_blocks(star)
    if not blocks:
        raise ParticleInputError(f"'{star}' has no data_ block: it is not a STAR file (expected a RELION "
                                 "particles STAR file with data_optics and data_particles).")
    by_name = {}
    for name, off in blocks:
        by_name.setdefault(name, off)
    onames = ocols = None
    if "optics" in by_name and "particles" in by_name:
        onames, ocols = _read_block(star, "optics", by_name["optics"])
        pblock = "particles"
        pnames, pcols = _read_block(star, pblock, by_name[pblock])
    else:
        pblock = pnames = pcols = None
        order = [b for b in ("particles", "images") if b in by_name]
        order += [b for b, _ in blocks if b not in order and b != "optics"]
        for b in order:
            names, cols = _read_block(star, b, by_name[b])
            if "rlnImageName" in names:
                pblock, pnames, pcols = b, names, cols
                break
        if pblock is None:
            raise ParticleInputError(f"STAR file '{star}' has no particle table (no block with an "
                                     "rlnImageName column): give the particles STAR file, not a micrograph "
                                     "or model STAR file.")
    if "rlnImageName" not in pnames:
        raise ParticleInputError(f"STAR file '{star}' has no rlnImageName column in data_{pblock}: the "
                                 "particles need image locations (N@stack.mrcs).")
    C = _Columns(star, pnames, pcols, onames, ocols, block=pblock)
    if C.n == 0:
        raise ParticleInputError(f"STAR file '{star}' has no particles (data_{pblock} is empty): select or "
                                 "extract particles first.")
    return C


def _image_locations(C: _Columns, star: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Image names, 0-based stack indices and resolved stack paths (relative to the STAR, then the cwd)."""
    star_dir = os.path.dirname(star)
    names = [str(v) for v in C.p["rlnImageName"]]
    stack_index = np.empty(C.n, dtype=np.int64)
    raw_paths = []
    for i, nm in enumerate(names):
        k, p = _parse_image_name(nm, star, i)
        stack_index[i] = k
        raw_paths.append(p)
    resolved: dict[str, str] = {}
    for i, p in enumerate(raw_paths):
        if p in resolved:
            continue
        r = _resolve(p, star_dir)
        if r is None:
            tried = p if os.path.isabs(p) else (f"{os.path.join(star_dir, p)}' or "
                                                f"'{os.path.join(os.getcwd(), p)}")
            raise ParticleInputError(
                f"particle row {i + 1} of STAR file '{star}' (image '{names[i]}'): stack file '{tried}' does "
                "not exist: image paths are taken relative to the STAR file's directory (then the current "
                "directory); move the stacks or fix rlnImageName.")
        resolved[p] = r
    return names, stack_index, np.array([resolved[p] for p in raw_paths], dtype=object)


def _ctf(C: _Columns, star: str) -> CTFParams:
    """Per-particle CTF parameters, checked (voltage > 0, amplitude contrast in [0, 1), Cs >= 0)."""
    f = {c: C.floats(c, required=True, hint=_CTF_HINT[c]) for c in _CTF_HINT}
    ps_shift = C.floats("rlnPhaseShift")
    ctf = CTFParams(f["rlnDefocusU"], f["rlnDefocusV"], f["rlnDefocusAngle"], f["rlnVoltage"],
                    f["rlnSphericalAberration"], f["rlnAmplitudeContrast"],
                    ps_shift if ps_shift is not None else np.zeros(C.n))
    for col, ok, what in (("rlnVoltage", f["rlnVoltage"] > 0, "must be > 0 (kV)"),
                          ("rlnAmplitudeContrast", (f["rlnAmplitudeContrast"] >= 0)
                           & (f["rlnAmplitudeContrast"] < 1), "must be in [0, 1)"),
                          ("rlnSphericalAberration", f["rlnSphericalAberration"] >= 0, "must be >= 0 (mm)")):
        if not ok.all():
            i = int(np.argmin(ok))
            raise ParticleInputError(f"{col} of STAR file '{star}' ({C.where(col)}) is {f[col][i]} for "
                                     f"particle row {i + 1}: it {what}; fix the acquisition parameters.")
    return ctf


def _star_pixel_size(C: _Columns, star: str) -> tuple[float | None, str]:
    """The one pixel size the STAR gives (None if it gives none) and the column(s) it came from."""
    apix_arr = C.floats("rlnImagePixelSize")
    apix_src = "rlnImagePixelSize"
    if apix_arr is None and C.has("rlnDetectorPixelSize") and C.has("rlnMagnification"):
        apix_arr = C.floats("rlnDetectorPixelSize") * 1e4 / C.floats("rlnMagnification")
        apix_src = "rlnDetectorPixelSize*1e4/rlnMagnification"
    if apix_arr is None:
        return None, apix_src
    if not np.all(apix_arr > 0):
        i = int(np.argmin(apix_arr > 0))
        raise ParticleInputError(f"STAR file '{star}' gives pixel size {apix_arr[i]} ({apix_src}) for "
                                 f"particle row {i + 1}: it must be > 0 A; fix the pixel size.")
    lo, hi = float(apix_arr.min()), float(apix_arr.max())
    if (hi - lo) / lo > _APIX_REL_TOL:
        raise ParticleInputError(
            f"particles of STAR file '{star}' have different pixel sizes ({lo:g} to {hi:g} A, "
            f"{apix_src}): this job needs one pixel size; rescale/re-extract the particles to a common "
            "pixel size.")
    return float(apix_arr[0]), apix_src


def _star_box(C: _Columns, star: str) -> int | None:
    size_arr = C.floats("rlnImageSize")
    if size_arr is None:
        return None
    if np.any(size_arr != size_arr[0]):
        raise ParticleInputError(
            f"particles of STAR file '{star}' have different box sizes (rlnImageSize "
            f"{int(size_arr.min())} to {int(size_arr.max())}): re-extract them with one box size.")
    return int(size_arr[0])


def _check_stacks(star, names, stack_index, stack_paths, star_box, apix, apix_src, cache) -> tuple[int, float]:
    """Open every stack once: square images of one box, indices within the stacks, pixel sizes that agree
    with the STAR's (or the headers' pixel size when the STAR gives none). Returns (box, pixel size)."""
    first_row = {}
    for i, p in enumerate(stack_paths):
        first_row.setdefault(p, i)
    ref = None
    hdr_apix = {}
    for p in first_row:
        data, vs = _stack_mmap(p)
        n_img, ny, nx = data.shape
        if ny != nx:
            raise ParticleInputError(
                f"images in stack '{p}' (STAR '{star}', particle row {first_row[p] + 1}) are not square "
                f"({nx} x {ny} pixels): re-extract the particles with a square box.")
        if ref is None:
            ref = (p, nx)
        elif nx != ref[1]:
            raise ParticleInputError(
                f"particles of STAR file '{star}' have mixed box sizes: stack '{ref[0]}' has {ref[1]} x "
                f"{ref[1]} images but stack '{p}' has {nx} x {nx}: re-extract all particles with one "
                "box size.")
        hdr_apix[p] = vs
        cache.put(p, data)
        bad = np.flatnonzero((stack_paths == p) & (stack_index >= n_img))
        if bad.size:
            i = int(bad[0])
            raise ParticleInputError(
                f"particle row {i + 1} of STAR file '{star}' (image '{names[i]}') refers to image "
                f"{stack_index[i] + 1} of stack '{p}', which has only {n_img} image(s): the STAR file "
                "does not match the stacks; re-extract or fix rlnImageName.")
    box = ref[1]
    if star_box is not None and star_box != box:
        raise ParticleInputError(
            f"STAR file '{star}' says rlnImageSize {star_box} but its stacks (e.g. '{ref[0]}') have "
            f"{box} x {box} images: fix rlnImageSize in data_optics or re-extract the particles.")
    set_apix = {p: v for p, v in hdr_apix.items() if not _apix_unset(v)}
    if apix is None:
        if not set_apix:
            raise ParticleInputError(
                f"STAR file '{star}' gives no pixel size (no rlnImagePixelSize, nor rlnDetectorPixelSize "
                "and rlnMagnification) and the stack headers do not set one: add rlnImagePixelSize.")
        p0, apix = next(iter(set_apix.items()))
        apix_src = f"header of '{p0}'"
    for p, v in set_apix.items():
        if abs(v - apix) / apix > _APIX_REL_TOL:
            raise ParticleInputError(
                f"pixel size disagreement: STAR file '{star}' gives {apix:g} A/px ({apix_src}) but the "
                f"MRC header of stack '{p}' says {v:g} A/px: fix rlnImagePixelSize (or the stack header) "
                "so they agree.")
    return box, apix


def _poses_and_labels(C: _Columns, star: str, apix: float, names) -> dict:
    """Optional columns: angles, origins (A), half-sets (1|2), micrographs and the job's scores."""
    out = {}
    if all(C.has(c) for c in ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")):
        out["rot"], out["tilt"], out["psi"] = (C.floats(c) for c in ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"))
    if C.has("rlnOriginXAngst") and C.has("rlnOriginYAngst"):
        out["origin_x"], out["origin_y"] = C.floats("rlnOriginXAngst"), C.floats("rlnOriginYAngst")
    elif C.has("rlnOriginX") and C.has("rlnOriginY"):
        out["origin_x"], out["origin_y"] = C.floats("rlnOriginX") * apix, C.floats("rlnOriginY") * apix
    if C.has("rlnRandomSubset"):
        vals = C.raw("rlnRandomSubset")
        half = np.array([C._parse_int(v, "rlnRandomSubset", i) for i, v in enumerate(vals)], dtype=np.int64)
        bad = np.flatnonzero((half != 1) & (half != 2))
        if bad.size:
            i = int(bad[0])
            raise ParticleInputError(
                f"rlnRandomSubset of STAR file '{star}' is {half[i]} for particle row {i + 1} (image "
                f"'{names[i]}'): half-set ids must be 1 or 2; fix or remove the rlnRandomSubset column.")
        out["half"] = half
    if C.has("rlnClassNumber"):
        out["class_number"] = np.array([C._parse_int(v, "rlnClassNumber", i)
                                        for i, v in enumerate(C.raw("rlnClassNumber"))], dtype=np.int64)
    if C.has("rlnMicrographName"):
        out["micrograph"] = np.array([str(v) for v in C.raw("rlnMicrographName")], dtype=object)
    out.update({name: C.floats(col) for name, col in _SCORE_COLUMNS if C.has(col)})
    return out


# ----------------------------------------------------------------------------------------------------------
# STAR writing
# ----------------------------------------------------------------------------------------------------------

def _fmt_str(v: str) -> str:
    s = str(v)
    if s == "":
        return '""'
    if any(c.isspace() for c in s) or s[0] in "'\"_#":
        return '"' + s.replace('"', "'") + '"'
    return s


def _write_loop(f, block: str, columns: list[tuple[str, list[str]]]) -> None:
    f.write(f"\n# version 30001\n\ndata_{block}\n\nloop_ \n")
    for k, (name, _) in enumerate(columns, 1):
        f.write(f"_{name} #{k} \n")
    for row in zip(*(vals for _, vals in columns)):
        f.write(" ".join(row))
        f.write(" \n")
    f.write("\n")


def _fcol(a, fmt="%.6f") -> list[str]:
    return [fmt % v for v in np.asarray(a, dtype=np.float64)]


def write_star(path, ps: ParticleSet) -> None:
    """Write a RELION 3.1 particle STAR file (``data_optics`` + ``data_particles``).

    One optics group per unique (voltage, Cs, amplitude contrast). Image paths are written relative to the
    STAR file's directory when the stack lies under it, absolute otherwise. Poses are written when angles
    and/or origins are set, ``rlnRandomSubset`` when ``half`` is set. The file is written atomically.
    """
    path = os.path.abspath(os.fspath(path))
    star_dir = os.path.dirname(path)
    n = len(ps)
    acq = np.stack([ps.ctf.voltage, ps.ctf.cs, ps.ctf.q0], axis=1) if n else np.zeros((0, 3))
    groups, gidx = np.unique(acq, axis=0, return_inverse=True)
    gidx = np.asarray(gidx).reshape(-1)
    ng = len(groups)
    optics = [
        ("rlnOpticsGroupName", [f"opticsGroup{g + 1}" for g in range(ng)]),
        ("rlnOpticsGroup", [str(g + 1) for g in range(ng)]),
        ("rlnVoltage", _fcol(groups[:, 0])),
        ("rlnSphericalAberration", _fcol(groups[:, 1])),
        ("rlnAmplitudeContrast", _fcol(groups[:, 2])),
        ("rlnImagePixelSize", ["%.6f" % ps.apix] * ng),
        ("rlnImageSize", [str(ps.box)] * ng),
        ("rlnImageDimensionality", ["2"] * ng),
    ]

    rel_cache: dict[str, str] = {}

    def rel(p: str) -> str:
        r = rel_cache.get(p)
        if r is None:
            ap = os.path.abspath(p)
            try:
                under = os.path.commonpath([ap, star_dir]) == star_dir
            except ValueError:
                under = False
            r = os.path.relpath(ap, star_dir) if under else ap
            rel_cache[p] = r
        return r

    image_names = [_fmt_str(f"{k + 1:06d}@{rel(p)}") for k, p in zip(ps.stack_index.tolist(), ps.stack_paths)]
    parts = [("rlnImageName", image_names)]
    if ps.micrograph is not None:
        parts.append(("rlnMicrographName", [_fmt_str(m) for m in ps.micrograph]))
    parts += [
        ("rlnDefocusU", _fcol(ps.ctf.defocus_u)),
        ("rlnDefocusV", _fcol(ps.ctf.defocus_v)),
        ("rlnDefocusAngle", _fcol(ps.ctf.defocus_angle)),
        ("rlnPhaseShift", _fcol(ps.ctf.phase_shift)),
        ("rlnOpticsGroup", [str(g + 1) for g in gidx.tolist()]),
    ]
    if ps.rot is not None and ps.tilt is not None and ps.psi is not None:
        parts += [("rlnAngleRot", _fcol(ps.rot)), ("rlnAngleTilt", _fcol(ps.tilt)),
                  ("rlnAnglePsi", _fcol(ps.psi))]
    if ps.origin_x is not None and ps.origin_y is not None:
        parts += [("rlnOriginXAngst", _fcol(ps.origin_x)), ("rlnOriginYAngst", _fcol(ps.origin_y))]
    if ps.half is not None:
        parts.append(("rlnRandomSubset", [str(int(h)) for h in ps.half]))
    if ps.class_number is not None:
        parts.append(("rlnClassNumber", [str(int(k)) for k in ps.class_number]))
    for name, col in _SCORE_COLUMNS:
        if getattr(ps, name) is not None:
            parts.append((col, _fcol(getattr(ps, name))))

    with atomic(path) as tmp, open(tmp, "w") as f:
        _write_loop(f, "optics", optics)
        _write_loop(f, "particles", parts)

