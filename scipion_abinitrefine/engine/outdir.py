"""The output directory: checked before any compute, locked while a job runs, written atomically.

* :func:`preflight` creates the directory, proves it writable with a real write, and estimates the space
  the checkpoint and the outputs need against what is free.
* :class:`JobLock` (``.abinitrefine.lock``: pid and host) keeps a second job out of a directory in use;
  a lock left by a dead process on this host is taken over.
* :func:`previous_outputs`, under the lock, refuses a directory that holds another job's outputs unless
  asked to overwrite them (a job still running there is refused by the lock first: its files are safe).
* :func:`atomic` writes a file under a name unique to this process and renames it into place, so a killed
  job or a full disk never leaves a truncated output under its final name; a failed write removes its
  temporary file and says what to free. ``result.json`` is written last: it is the manifest of a complete set.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket

from .names import CHECKPOINT, OUTPUTS  # noqa: F401 (the job's files; re-exported)
from .names import OUT_RESULT as RESULT

LOCK = ".abinitrefine.lock"
SPACE_MARGIN = 1.5  # free space asked for beyond the estimate (temporary copies, logs)


class OutputError(RuntimeError):
    """The output directory cannot take the job's outputs (permissions, space, another job, old outputs)."""


def _free_bytes(path: str) -> int:
    return shutil.disk_usage(path).free


def estimate_bytes(box: int, n_particles: int, pad: int = 2) -> int:
    """Bytes the job writes at its peak: the checkpoint twice (new beside old), maps, STAR files."""
    vol = (pad * box) ** 3
    checkpoint = 2 * vol * (8 + 4) + n_particles * 200  # per half: model (complex64) + weights (float32)
    maps = 3 * box ** 3 * 4
    return 2 * checkpoint + maps + n_particles * 600 + 2_000_000  # STAR rows, figures, logs


def preflight(out_dir: str, box: int, n_particles: int, pad: int = 2) -> None:
    """Everything about ``out_dir`` that can fail, checked before the compute (raises :class:`OutputError`):
    created, writable, room for the checkpoint and the outputs. Then, under the lock: :func:`previous_outputs`."""
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create the output directory '{out_dir}' ({e.strerror}): choose another --out "
                          "or fix its parent's permissions") from None
    probe = os.path.join(out_dir, f".abinitrefine_write_test.{os.getpid()}")
    try:
        with open(probe, "wb") as f:
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise OutputError(f"cannot write in the output directory '{out_dir}' ({e.strerror}): choose another "
                          "--out or fix its permissions / free space") from None
    finally:
        with contextlib.suppress(OSError):
            os.remove(probe)
    need = estimate_bytes(box, n_particles, pad) * SPACE_MARGIN
    free = _free_bytes(out_dir)
    if free < need:
        raise OutputError(f"the output directory '{out_dir}' has {free / 2**20:.0f} MiB free; this job needs about "
                          f"{need / 2**20:.0f} MiB (checkpoint and outputs): free space or choose another --out")


def protect_inputs(out_dir: str, inputs) -> None:
    """Refuse an output directory that holds one of the job's ``inputs`` (the STAR file, its image stacks),
    whatever ``--overwrite`` says (raises :class:`OutputError`): the job writes its own ``particles.star``,
    and a user's input under that name would be replaced by the output, or removed by ``--overwrite``."""
    here = os.path.realpath(out_dir)
    mine = [p for p in dict.fromkeys(map(os.fspath, inputs)) if os.path.dirname(os.path.realpath(p)) == here]
    if mine:
        raise OutputError(f"the output directory '{out_dir}' holds the job's input ({', '.join(mine[:3])}"
                          f"{', ...' if len(mine) > 3 else ''}): the job writes particles.star and other files there "
                          "and would replace or remove it. Choose a new --out directory (e.g. a subdirectory); "
                          "nothing was changed")


def previous_outputs(out_dir: str, resume: bool = False, overwrite: bool = False, say=print) -> None:
    """Refuse a directory that holds another job's outputs or checkpoint (raises :class:`OutputError`), or with
    ``overwrite`` remove them. Call it holding the directory's :class:`JobLock`: a job still running there must
    be refused as running (not told to --continue), and ``--overwrite`` must not delete its files."""
    if resume:
        return
    old = [f for f in OUTPUTS + (CHECKPOINT,) if os.path.exists(os.path.join(out_dir, f))]
    if old and not overwrite:
        what = "a job checkpoint" if old == [CHECKPOINT] else f"another job's outputs ({', '.join(old[:4])}...)"
        hint = "--continue to resume it, " if CHECKPOINT in old else ""
        raise OutputError(f"'{out_dir}' already holds {what}: use {hint}a new --out directory, or --overwrite to "
                          "replace them (nothing was changed)")
    if old and overwrite:
        # the manifest first: from here on the old set is marked incomplete, whatever happens next
        for f in (RESULT, CHECKPOINT) + OUTPUTS:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(out_dir, f))
        say(f"--overwrite: removed the previous job's outputs in {out_dir}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class JobLock:
    """``with JobLock(out_dir):`` one job per directory; raises :class:`OutputError` when another holds it."""

    def __init__(self, out_dir: str, say=print):
        self.path = os.path.join(out_dir, LOCK)
        self.say = say
        self.held = False

    def __enter__(self):
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    with open(self.path) as f:
                        other = json.load(f)
                except (OSError, ValueError):
                    other = {}
                if other.get("host") == me["host"] and isinstance(other.get("pid"), int) \
                        and not _pid_alive(other["pid"]):
                    self.say(f"taking over the lock of a job that is no longer running (pid {other['pid']})")
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(self.path)
                    continue
                raise OutputError(f"another job (pid {other.get('pid', '?')} on {other.get('host', '?')}) is running "
                                  f"in '{os.path.dirname(self.path)}': wait for it or choose another --out (if no "
                                  f"job runs there, remove {self.path})") from None
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return self
        raise OutputError(f"cannot take the lock {self.path}")

    def __exit__(self, *exc):
        if self.held:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)
            self.held = False
        return False


@contextlib.contextmanager
def atomic(path: str):
    """``with atomic(path) as tmp:`` write ``tmp``; it becomes ``path`` only when the block succeeds.

    The temporary name is unique to the process and keeps the extension (``.name.<pid>.tmp.mrc``).
    """
    path = os.fspath(path)
    d, base = os.path.split(path)
    stem, ext = os.path.splitext(base)
    tmp = os.path.join(d, f".{stem}.{os.getpid()}.tmp{ext}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OutputError(f"no space left to write '{path}': free space in {d or '.'} (the previous version, "
                              "if any, is unchanged) and continue the job with --continue") from None
        raise OutputError(f"cannot write '{path}' ({e.strerror or e}): check the directory's permissions and space "
                          "(the previous version, if any, is unchanged)") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
