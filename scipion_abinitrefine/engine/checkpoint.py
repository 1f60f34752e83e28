"""What a ``--continue`` may trust: the checkpoint file read back whole or refused clearly, and the
fingerprint of the data it was made from.

The fingerprint digests what changes a result and nothing that does not: the images' content (a sample of
images per stack, each stack's size and every particle's place in its stack, not the stacks' paths, so the
same data moved or written with absolute paths still continue), the CTF columns, the box and the pixel
size. A re-simulated stack behind the same STAR rows, or a shifted defocus, is refused.
"""
from __future__ import annotations

import hashlib

import numpy as np

# images read per stack for the fingerprint (evenly spaced among the particles that use the stack)
SAMPLED_PER_STACK = 4
# ... and at most this many in all (a set with one stack per micrograph has thousands of stacks)
SAMPLED_MAX = 4096


class CheckpointError(ValueError):
    """The checkpoint cannot be read back (truncated, damaged, not a checkpoint of this program)."""


def read(path: str) -> dict:
    """Every array of checkpoint ``path`` (a dict), or :class:`CheckpointError` saying what to do."""
    try:
        with np.load(path) as z:
            out = {k: z[k] for k in z.files}
    except Exception as e:  # zipfile.BadZipFile, EOFError, ValueError (pickled data), OSError, ...
        raise CheckpointError(
            f"the checkpoint {path} cannot be read ({type(e).__name__}: {e}): it is damaged or incomplete. Restore "
            "it from a copy and --continue, or start again without --continue (--overwrite, or a new --out)"
        ) from None
    for key in ("params", "stage", "log", "alignments"):
        if key not in out:
            raise CheckpointError(f"the checkpoint {path} has no '{key}': it is not a complete checkpoint of this "
                                  "program. Start again without --continue (--overwrite, or a new --out)")
    return out


def _stack_ranks(ps) -> np.ndarray | None:
    """Each row's stack, numbered in the order the STAR file first names the stacks (not by path); None for
    a source without stacks."""
    paths = getattr(ps, "stack_paths", None)
    if paths is None:
        return None
    _, first, code = np.unique(np.asarray(paths).astype(str), return_index=True, return_inverse=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    return rank[code.reshape(-1)]


def _sample_rows(ps, ranks: np.ndarray | None) -> np.ndarray:
    """Rows whose images the fingerprint reads: up to ``SAMPLED_PER_STACK`` per stack (``ranks``:
    :func:`_stack_ranks`), evenly spaced in stack order; at most ``SAMPLED_MAX`` in all."""
    n = len(ps)
    if ranks is None:  # an in-memory source: evenly spaced rows
        return np.unique(np.linspace(0, n - 1, min(n, SAMPLED_MAX)).astype(np.int64))
    order = np.lexsort((np.asarray(ps.stack_index), ranks))  # by stack, then by place in it (stable)
    edges = np.flatnonzero(np.diff(ranks[order])) + 1
    rows = [own[np.unique(np.linspace(0, len(own) - 1, min(len(own), SAMPLED_PER_STACK)).astype(int))]
            for own in np.split(order, edges)]
    rows = np.concatenate(rows)
    if len(rows) > SAMPLED_MAX:
        rows = rows[np.unique(np.linspace(0, len(rows) - 1, SAMPLED_MAX).astype(int))]
    return np.sort(rows)


def fingerprint(ps) -> str:
    """sha256 of what the data contribute to a result (see the module's docstring)."""
    h = hashlib.sha256(f"v2|{len(ps)}|{ps.box}|{float(ps.apix):.6f}|".encode())
    ranks = _stack_ranks(ps)
    if ranks is not None:  # each particle's stack (by order of appearance, not by path) and place in it
        h.update(ranks.astype("<i8").tobytes())
        h.update(np.asarray(ps.stack_index, "<i8").tobytes())
    ctf = ps.ctf
    for name in ("defocus_u", "defocus_v", "defocus_angle", "voltage", "cs", "q0", "phase_shift"):
        v = getattr(ctf, name, None)
        h.update(name.encode())
        if v is not None:
            h.update(np.asarray(v, "<f4").tobytes())  # float32: a STAR round trip's last digits do not count
    if len(ps):
        rows = _sample_rows(ps, ranks)
        h.update(rows.astype("<i8").tobytes())
        for a in range(0, len(rows), 256):
            h.update(np.ascontiguousarray(ps.read_images(rows[a:a + 256]), "<f4").tobytes())
    return h.hexdigest()


def legacy_fingerprint(ps) -> str:
    """The fingerprint of checkpoints written before :func:`fingerprint` (row count, image names, box,
    pixel size), so that they still continue."""
    h = hashlib.sha256(f"{len(ps)}|{ps.box}|{float(ps.apix):.6f}|".encode())
    names = getattr(ps, "image_names", None)
    if names is not None:
        h.update("\n".join(map(str, names)).encode())
    return h.hexdigest()
