"""Job outputs a person or a downstream program reads: FSC tables/plot, map slices, angular distribution."""
from __future__ import annotations

import os

import numpy as np

from . import names
from .outdir import atomic


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path, dpi):
    with atomic(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")


def write_fsc(out: str, gs: dict, box: int, apix: float) -> None:
    """fsc.csv, fsc.star (RELION-style table) and fsc.png from :func:`fsc.gold_standard_fsc` output."""
    shell = np.asarray(gs["shell"])
    freq = np.asarray(gs["freq"])
    res = np.where(freq > 0, 1.0 / np.maximum(freq, 1e-12), np.inf)
    cols = ["fsc_unmasked", "fsc_masked", "fsc_corrected", "fsc_randomized"]
    with atomic(os.path.join(out, names.OUT_FSC)) as tmp, open(tmp, "w") as f:
        f.write("shell,freq_1_per_A,resolution_A," + ",".join(cols) + "\n")
        for i in range(len(shell)):
            f.write(f"{int(shell[i])},{freq[i]:.6f},{res[i]:.4f}," +
                    ",".join(f"{float(gs[c][i]):.5f}" for c in cols) + "\n")
    with atomic(os.path.join(out, names.OUT_FSC_STAR)) as tmp, open(tmp, "w") as f:
        f.write("\n# version 30001\n\ndata_general\n\n")
        f.write(f"_rlnFinalResolution {gs['resolution']:.4f}\n\ndata_fsc\n\nloop_\n")
        f.write("_rlnSpectralIndex #1\n_rlnResolution #2\n_rlnAngstromResolution #3\n"
                "_rlnFourierShellCorrelationCorrected #4\n_rlnFourierShellCorrelationUnmaskedMaps #5\n"
                "_rlnFourierShellCorrelationMaskedMaps #6\n"
                "_rlnCorrectedFourierShellCorrelationPhaseRandomizedMaskedMaps #7\n")
        for i in range(len(shell)):
            f.write(f"{int(shell[i])} {freq[i]:.6f} {min(res[i], 999.0):.4f} {float(gs['fsc_corrected'][i]):.5f} "
                    f"{float(gs['fsc_unmasked'][i]):.5f} {float(gs['fsc_masked'][i]):.5f} "
                    f"{float(gs['fsc_randomized'][i]):.5f}\n")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for c, lab in zip(cols, ["unmasked", "masked", "corrected (phase randomisation)", "phase-randomised masked"]):
        ax.plot(freq, gs[c], label=lab)
    ax.axhline(names.FSC_GOLD, color="k", lw=0.8, ls="--")
    ax.set_xlabel("spatial frequency (1/A)")
    ax.set_ylabel("FSC")
    ax.set_ylim(-0.1, 1.05)
    ax.set_title(f"gold-standard FSC: {gs['resolution']:.2f} A at {names.FSC_GOLD}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, os.path.join(out, names.FIG_FSC), 100)
    plt.close(fig)


def write_figures(out: str, map_a, map_b, ps, log) -> None:
    """Central slices of both half-maps, angular distribution, convergence of both halves."""
    plt = _plt()
    D = map_a.shape[0]
    fig, ax = plt.subplots(2, 3, figsize=(9, 6))
    for r, (name, m) in enumerate((("A", map_a), ("B", map_b))):
        for c, sl in enumerate((m[D // 2], m[:, D // 2], m[:, :, D // 2])):
            ax[r, c].imshow(sl, cmap="gray")
            ax[r, c].set_axis_off()
            ax[r, c].set_title(f"half {name} {'zyx'[c]} = centre", fontsize=8)
    fig.tight_layout()
    _save(fig, os.path.join(out, names.FIG_SLICES), 80)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    if ps.rot is not None and len(ps.rot):
        ax.hist2d(ps.rot, ps.tilt, bins=(36, 18), range=[[-180, 180], [0, 180]], cmap="viridis")
    ax.set_xlabel("rot (deg)")
    ax.set_ylabel("tilt (deg)")
    ax.set_title("angular distribution of the used particles")
    fig.tight_layout()
    _save(fig, os.path.join(out, names.FIG_ANGDIST), 80)
    plt.close(fig)
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    for name in ("A", "B"):
        e = [x for x in log if x["half"] == name]
        ax[0].plot([x["iteration"] for x in e], [x["resolution_A"] for x in e], label=f"half {name}")
        ax[1].semilogy([x["iteration"] for x in e], [max(x["ess"], 1e-3) for x in e], label=f"half {name}")
    ax[0].set_ylabel("resolution (A)")
    ax[1].set_ylabel("3D ESS (rotations)")
    for a in ax:
        a.set_xlabel("iteration")
        a.legend()
    fig.tight_layout()
    _save(fig, os.path.join(out, names.FIG_CONVERGENCE), 80)
    plt.close(fig)
