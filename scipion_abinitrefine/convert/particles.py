"""Scipion particles <-> the engine's :class:`~scipion_abinitrefine.engine.io.ParticleSet` / STAR files.

Input poses are ignored (ab-initio); the CTF comes from each particle's ``CTFModel`` (defocusU/V/angle in
Angstrom/degrees, phase shift in degrees = RELION ``rlnDefocusU/V/Angle``, ``rlnPhaseShift``) and the
acquisition (voltage in kV, spherical aberration in mm, amplitude contrast). Images are used in place when
they are MRC stacks ``mrcfile`` can read; anything else is converted to one ``.mrcs`` in a work folder.

Output particles are matched back to input items by (real path of the stack, 0-based index in it), never by
image-name strings (the job may write them relative to another folder).
"""
from __future__ import annotations

import os

import numpy as np

from ..engine import io
from ..engine.ctf import CTFParams

MRC_EXTENSIONS = (".mrc", ".mrcs", ".st", ".map")


class ParticleConversionError(ValueError):
    """The input particles cannot be given to the engine; the message says why and what to do."""


def stack_key(path, index0) -> tuple:
    """Key that identifies one image: (real absolute path of its stack, 0-based index)."""
    return os.path.realpath(os.path.abspath(str(path))), int(index0)


def _split_location(particle):
    """(1-based index or 0 for a single image, filename without a ':format' suffix)."""
    index, fn = particle.getLocation()
    fn = str(fn)
    if ":" in fn:
        base, suffix = fn.rsplit(":", 1)
        if "/" not in suffix and suffix.lower() in ("mrc", "mrcs", "spi", "stk", "hdf", "img", "em", "tif"):
            fn = base
    return int(index or 0), fn


def _acq_values(particle, set_acq):
    acq = particle.getAcquisition() if hasattr(particle, "getAcquisition") else None
    vals = None
    if acq is not None and acq.getVoltage() is not None:
        vals = (acq.getVoltage(), acq.getSphericalAberration(), acq.getAmplitudeContrast())
    if vals is None or any(v is None for v in vals):
        vals = (set_acq.getVoltage(), set_acq.getSphericalAberration(), set_acq.getAmplitudeContrast())
    if any(v is None for v in vals):
        raise ParticleConversionError(
            "the input particles have no acquisition (voltage, spherical aberration, amplitude contrast): "
            "import them again with the acquisition parameters set")
    return tuple(float(v) for v in vals)


def _mrc_readable(path, box) -> bool:
    if not path.lower().endswith(MRC_EXTENSIONS) or not os.path.isfile(path):
        return False
    try:
        stack = io.open_stack(path)
    except (io.ParticleInputError, OSError, ValueError):
        return False
    return stack.shape[1:] == (box, box)


def _read_other_format(path, indices1):
    """Images ``indices1`` (1-based; 0 = the single image) of a non-MRC file, through pwem's image readers."""
    try:
        if path.lower().endswith((".tif", ".tiff")):
            import tifffile

            images = [tifffile.imread(path, key=max(i, 1) - 1) for i in indices1]
        else:
            from pwem.emlib.image.image_readers import ImageReadersRegistry

            reader = ImageReadersRegistry.getReader(path)
            if reader.canOpenSlices():
                images = [reader.openSlice(path, max(i, 1)) for i in indices1]
            else:
                data = np.asarray(reader.open(path))
                data = data[None] if data.ndim == 2 else data
                images = [data[max(i, 1) - 1] for i in indices1]
        return np.stack([np.asarray(im, dtype=np.float32).reshape(np.shape(im)[-2:]) for im in images])
    except Exception as err:  # any reader failure: try ImageHandler (Xmipp), then a clear message
        return _read_with_image_handler(path, indices1, err)


def _read_with_image_handler(path, indices1, first_err):
    """Fallback for formats the pure-Python readers do not handle: pwem ImageHandler (needs Xmipp)."""
    try:
        from pwem.emlib.image import ImageHandler

        ih = ImageHandler()
        images = []
        for i in indices1:
            data = np.asarray(ih.read((max(i, 1), path)).getData(), dtype=np.float32)
            images.append(data.reshape(data.shape[-2:]))
        return np.stack(images)
    except Exception as err:
        raise ParticleConversionError(
            f"cannot read the particle images in '{path}' ({first_err}; {err}): convert them to an MRC "
            "stack (.mrcs), e.g. with a Scipion 'export particles' protocol, and import them again") from err


def particles_to_engine(particles, work_dir, log=None):
    """Scipion ``SetOfParticles`` (or iterable of particles plus ``sampling``/``box``) -> engine ParticleSet.

    Returns ``(ps, ids)``: the engine set and the Scipion ids of its particles, in the same order. Images in
    formats mrcfile cannot read are converted into ``work_dir/particles_converted.mrcs``.
    """
    apix = float(particles.getSamplingRate())
    box = int(particles.getXDim() or particles.getDim()[0])
    set_acq = particles.getAcquisition()
    ids, files, index1 = [], [], []
    du, dv, dang, volt, cs, q0, phase = [], [], [], [], [], [], []
    micrographs = []
    for p in particles.iterItems(orderBy="id"):
        ctf = p.getCTF()
        if ctf is None or ctf.getDefocusU() is None:
            raise ParticleConversionError(
                f"particle {p.getObjId()} has no CTF: estimate the CTF of the micrographs and re-extract, or "
                "import the particles with their CTF")
        idx, fn = _split_location(p)
        ids.append(int(p.getObjId()))
        files.append(fn)
        index1.append(idx)
        du.append(ctf.getDefocusU())
        dv.append(ctf.getDefocusV() if ctf.getDefocusV() is not None else ctf.getDefocusU())
        dang.append(ctf.getDefocusAngle() or 0.0)
        phase.append((ctf.getPhaseShift() if hasattr(ctf, "getPhaseShift") else None) or 0.0)
        v, c, a = _acq_values(p, set_acq)
        volt.append(v)
        cs.append(c)
        q0.append(a)
        mic = p.getMicId() if hasattr(p, "getMicId") else None
        micrographs.append(str(mic) if mic is not None else "")
    if not ids:
        raise ParticleConversionError("the input set of particles is empty")

    files = np.array([os.path.abspath(f) for f in files], dtype=object)
    index1 = np.array(index1, dtype=np.int64)
    stack_paths = files.copy()
    stack_index = np.maximum(index1 - 1, 0)

    # stacks mrcfile cannot read are converted into one .mrcs, in input order
    readable = {f: _mrc_readable(f, box) for f in np.unique(files)}
    bad = np.array([not readable[f] for f in files])
    if bad.any():
        os.makedirs(work_dir, exist_ok=True)
        out = os.path.join(os.path.abspath(work_dir), "particles_converted.mrcs")
        if log:
            log(f"converting {int(bad.sum())} particle images to {out}")
        sel = np.flatnonzero(bad)
        images = np.empty((len(sel), box, box), dtype=np.float32)
        for f in np.unique(files[sel]):
            rows = sel[files[sel] == f]
            data = _read_other_format(f, index1[rows].tolist())
            if data.shape[1:] != (box, box):
                raise ParticleConversionError(
                    f"images in '{f}' are {data.shape[2]}x{data.shape[1]} pixels but the set says box {box}")
            images[np.searchsorted(sel, rows)] = data
        io.write_stack(out, images, apix)
        stack_paths[sel] = out
        stack_index[sel] = np.arange(len(sel))

    ctf = CTFParams(np.array(du, float), np.array(dv, float), np.array(dang, float), np.array(volt, float),
                    np.array(cs, float), np.array(q0, float), np.array(phase, float))
    names = np.array([f"{i + 1:06d}@{p}" for i, p in zip(stack_index.tolist(), stack_paths)], dtype=object)
    mic = np.array(micrographs, dtype=object) if all(micrographs) else None
    ps = io.ParticleSet(image_names=names, stack_paths=stack_paths, stack_index=stack_index, apix=apix, box=box,
                        ctf=ctf, micrograph=mic)
    return ps, np.array(ids, dtype=np.int64)


def write_input_star(particles, star_path, work_dir=None, log=None):
    """Write the engine's input STAR for a Scipion set; returns ``{stack_key: particle id}``."""
    work_dir = work_dir or os.path.dirname(os.path.abspath(star_path))
    ps, ids = particles_to_engine(particles, work_dir, log=log)
    io.write_star(star_path, ps)
    return {stack_key(p, i): int(pid) for p, i, pid in zip(ps.stack_paths, ps.stack_index.tolist(), ids.tolist())}


def read_job_scores(star_path) -> dict:
    """Engine output STAR -> ``{stack_key: {column: value}}`` for the per-particle score columns present
    (rlnLogLikeliContribution, rlnMaxValueProbDistribution, rlnParticleSelectZScore; rlnClassNumber, an int,
    in unused.star with junk classes)."""
    ps = io.read_star(star_path)
    cols = [(col, getattr(ps, name)) for name, col in io._SCORE_COLUMNS if getattr(ps, name) is not None]
    if ps.class_number is not None:
        cols.append(("rlnClassNumber", ps.class_number))
    return {stack_key(ps.stack_paths[k], ps.stack_index[k]): {c: v[k].item() for c, v in cols}
            for k in range(len(ps))} if cols else {}


def read_job_particles(star_path):
    """Engine output STAR -> ``{stack_key: (rot, tilt, psi, origin_x, origin_y, half)}`` (half may be None)."""
    ps = io.read_star(star_path)
    out = {}
    n = len(ps)
    zeros = np.zeros(n)
    rot = ps.rot if ps.rot is not None else zeros
    tilt = ps.tilt if ps.tilt is not None else zeros
    psi = ps.psi if ps.psi is not None else zeros
    ox = ps.origin_x if ps.origin_x is not None else zeros
    oy = ps.origin_y if ps.origin_y is not None else zeros
    for k in range(n):
        half = int(ps.half[k]) if ps.half is not None else None
        out[stack_key(ps.stack_paths[k], ps.stack_index[k])] = (
            float(rot[k]), float(tilt[k]), float(psi[k]), float(ox[k]), float(oy[k]), half)
    return out


def read_job_keys(star_path) -> list:
    """Stack keys of the particles of an engine STAR file (e.g. ``unused.star``), in file order."""
    ps = io.read_star(star_path)
    return [stack_key(p, i) for p, i in zip(ps.stack_paths, ps.stack_index.tolist())]
