"""Judge finished runs again with the current verdict rules (after a change to their calibration).

    .venv/bin/python bench/rejudge.py OUT_DIR [OUT_DIR ...]

The verdict is a function of the gold-standard FSC of the half-maps and of the pose tests stored in
``result.json`` (``convergence.pose_agreement``, ``convergence.map_pose_agreement``); nothing is searched
again. Prints the stored verdict, the verdict now, and its message.
"""
from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scipion_abinitrefine.engine import fsc, io, names, verdict  # noqa: E402


def rejudge(out_dir: str) -> dict:
    r = json.load(open(os.path.join(out_dir, "result.json")))
    a, apix = io.read_mrc(os.path.join(out_dir, names.OUT_HALF_A))
    b, _ = io.read_mrc(os.path.join(out_dir, names.OUT_HALF_B))
    gs = fsc.gold_standard_fsc(a, b, apix)
    c, p = r["convergence"], r["params"]
    return verdict.convergence_verdict(gs, a.shape[0], apix, p["align_res_A"], p["max_res_A"],
                                       align_cc=c.get("align_cc"), poses=c.get("pose_agreement"),
                                       map_poses=c.get("map_pose_agreement")) | {"stored": r["verdict"]}


def main():
    for d in sys.argv[1:]:
        v = rejudge(d)
        print(f"{d}: stored {v['stored']}, now {v['verdict']}\n  {v['message']}")


if __name__ == "__main__":
    main()
