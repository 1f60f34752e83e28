"""STAR tables: find a file's data blocks, parse one with ``emtable``, and read particle columns with
RELION 3.1 optics-group values mapped onto particles; errors name the file, block, column and row."""
from __future__ import annotations

import numpy as np
from emtable import Table

from .mrc import ParticleInputError


def _star_blocks(path: str) -> list[tuple[str, int]]:
    """(block name, byte offset of its 'data_' line) for every data block of a STAR file."""
    blocks = []
    with open(path, "rb") as f:
        pos = 0
        for line in f:
            s = line.strip()
            if s.startswith(b"data_"):
                name = s[5:].split()[0].decode("utf-8", "replace") if len(s) > 5 else ""
                blocks.append((name, pos))
            pos += len(line)
    return blocks


def _read_block(path: str, name: str, offset: int) -> tuple[list[str], list[tuple]]:
    """Column names and column value tuples (all str) of one block, parsed with emtable."""
    t = Table()
    try:
        with open(path) as f:
            f.seek(offset)
            t.readStar(f, tableName=name, guessType=False)
    except Exception as err:
        raise ParticleInputError(
            f"cannot parse block data_{name} of STAR file '{path}' ({type(err).__name__}: {err}): check that "
            "every row has one value per column and the file is not truncated.") from err
    names = t.getColumnNames()
    cols = list(zip(*t)) if len(t) else [() for _ in names]
    return names, cols


class _Columns:
    """Particle-table columns, with optics-group values mapped onto particles (RELION 3.1)."""

    def __init__(self, star, pnames, pcols, onames=None, ocols=None, block="particles"):
        self.star = star
        self.block = block
        self.p = dict(zip(pnames, pcols))
        self.n = len(pcols[0]) if pcols else 0
        self.o = dict(zip(onames, ocols)) if onames is not None else None
        self.group_row = None  # optics-table row of each particle
        if self.o is not None:
            self._map_optics()

    def _map_optics(self):
        ngroups = len(next(iter(self.o.values()))) if self.o else 0
        if ngroups == 0:
            raise ParticleInputError(
                f"STAR file '{self.star}' has an empty data_optics block: add one row per optics group "
                "(voltage, Cs, amplitude contrast, pixel size, image size).")
        if "rlnOpticsGroup" in self.o:
            ids = [self._parse_int(v, "rlnOpticsGroup", i, table="data_optics")
                   for i, v in enumerate(self.o["rlnOpticsGroup"])]
        else:
            ids = list(range(1, ngroups + 1))
        lookup = {g: r for r, g in enumerate(ids)}
        if "rlnOpticsGroup" in self.p:
            rows = np.empty(self.n, dtype=np.int64)
            for i, v in enumerate(self.p["rlnOpticsGroup"]):
                g = self._parse_int(v, "rlnOpticsGroup", i)
                if g not in lookup:
                    raise ParticleInputError(
                        f"particle row {i + 1} of STAR file '{self.star}' has rlnOpticsGroup {g}, which is "
                        f"not in data_optics (groups {sorted(lookup)}): fix the particles' optics groups.")
                rows[i] = lookup[g]
        elif ngroups == 1:
            rows = np.zeros(self.n, dtype=np.int64)
        else:
            raise ParticleInputError(
                f"STAR file '{self.star}' has {ngroups} optics groups but no rlnOpticsGroup column in "
                "data_particles: add rlnOpticsGroup to every particle.")
        self.group_row = rows

    def _parse_int(self, v, col, i, table=None):
        try:
            f = float(v)
            if f != int(f):
                raise ValueError
            return int(f)
        except (ValueError, OverflowError):
            where = table or f"data_{self.block}"
            raise ParticleInputError(
                f"column {col} of STAR file '{self.star}' ({where}) has the non-integer value '{v}' at row "
                f"{i + 1}: fix the STAR file.") from None

    def has(self, col) -> bool:
        return col in self.p or (self.o is not None and col in self.o)

    def where(self, col) -> str:
        return f"data_{self.block}" if col in self.p else "data_optics"

    def raw(self, col):
        """Per-particle list of raw string values (optics values broadcast), or None."""
        if col in self.p:
            return self.p[col]
        if self.o is not None and col in self.o:
            vals = self.o[col]
            return [vals[r] for r in self.group_row]
        return None

    def floats(self, col, required=False, hint=None, finite=True):
        if col in self.p:
            vals, table = self.p[col], f"data_{self.block}"
        elif self.o is not None and col in self.o:
            vals, table = self.o[col], "data_optics"
        else:
            if required:
                blocks = f"data_{self.block}" + (" or data_optics" if self.o is not None else "")
                raise ParticleInputError(f"STAR file '{self.star}' has no {col} column (in {blocks}): "
                                         f"{hint or 'add it'}.")
            return None
        try:
            arr = np.array(vals, dtype=np.float64)
        except ValueError:
            for i, v in enumerate(vals):
                try:
                    float(v)
                except ValueError:
                    raise ParticleInputError(
                        f"column {col} of STAR file '{self.star}' ({table}) has the non-numeric value "
                        f"'{v}' at row {i + 1}: fix the STAR file.") from None
            raise
        if finite and not np.all(np.isfinite(arr)):
            i = int(np.argmin(np.isfinite(arr)))
            raise ParticleInputError(f"column {col} of STAR file '{self.star}' ({table}) has the value "
                                     f"'{vals[i]}' at row {i + 1}: fix or remove that row.")
        if table == "data_optics":
            arr = arr[self.group_row]
        return arr
