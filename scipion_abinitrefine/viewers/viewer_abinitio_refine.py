"""Viewer of :class:`ProtAbInitioRefine` results: FSC, convergence of both halves, half-map slices."""
import os

import numpy as np
import pyworkflow.protocol.params as params
from pyworkflow.gui.plotter import Plotter
from pyworkflow.protocol.constants import LEVEL_ADVANCED
from pyworkflow.viewer import DESKTOP_TKINTER, ProtocolViewer

from .. import constants as C
from ..engine.fsc import crossing
from ..protocols import ProtAbInitioRefine


class AbInitioRefineViewer(ProtocolViewer):
    """FSC curve (with the threshold line), per-iteration resolution and ESS of both halves, and the central
    slices of both half-maps."""

    _label = "viewer homogeneous ab-initio refinement"
    _targets = [ProtAbInitioRefine]
    _environments = [DESKTOP_TKINTER]

    def _defineParams(self, form):
        form.addSection(label="Visualization")
        form.addParam("showFsc", params.LabelParam, label="Gold-standard FSC",
                      help="FSC between the half-maps: unmasked, masked and phase-randomisation corrected.")
        form.addParam("fscThreshold", params.FloatParam, default=C.FSC_THRESHOLD, expertLevel=LEVEL_ADVANCED,
                      label="FSC threshold")
        form.addParam("showConvergence", params.LabelParam, label="Convergence of both halves",
                      help="Resolution and 3D effective sample size (ESS) per iteration of half A and half B.")
        form.addParam("showSlices", params.LabelParam, label="Half-map central slices",
                      help="Central slices (z, y, x) of half-map A and half-map B.")

    def _getVisualizeDict(self):
        return {"showFsc": self._showFsc,
                "showConvergence": self._showConvergence,
                "showSlices": self._showSlices}

    # ------------------------------------------------------------------ data
    def _fscTable(self):
        fn = self.protocol._getJobDir(C.OUT_FSC)
        if not os.path.exists(fn):
            raise FileNotFoundError(f"{fn} does not exist: the job has not finished")
        return np.atleast_1d(np.genfromtxt(fn, delimiter=",", names=True))

    def _errorView(self, msg):
        from pyworkflow.viewer import MessageView

        return [MessageView(msg, title="No results yet", tkParent=self.getTkRoot())]

    # ------------------------------------------------------------------ plots
    def _showFsc(self, paramName=None):
        try:
            table = self._fscTable()
        except FileNotFoundError as e:
            return self._errorView(str(e))
        conv = (self.protocol._readResult() or {}).get("convergence")
        return [self.plotFsc(table, self.fscThreshold.get(), conv)]

    @staticmethod
    def plotFsc(table, threshold=C.FSC_THRESHOLD, convergence=None):
        """FSC curves; ``convergence`` (result.json's verdict) is shown on the plot, red when it failed."""
        plotter = Plotter(windowTitle="Gold-standard FSC", figsize=(7, 5))
        ax = plotter.createSubPlot("Gold-standard FSC between the half-maps", "Resolution (1/A)", "FSC")
        freq = table["freq_1_per_A"]
        for col, label in C.FSC_CURVES:  # RELION postprocess's curves and labels
            if col in table.dtype.names:
                ax.plot(freq, table[col], label=label)
        ax.axhline(threshold, color="k", ls="--", lw=0.8, label=f"{threshold:g}")
        res = crossing(freq, table["fsc_corrected"], threshold)  # the rule of the job's result.json
        if res is not None:
            ax.axvline(1.0 / res, color="r", ls=":", lw=0.8)
            ax.set_title(f"Gold-standard FSC: {res:.2f} A at {threshold:g}")
        elif len(freq) and freq[-1] > 0:
            ax.set_title(f"FSC above {threshold:g} up to Nyquist ({1.0 / freq[-1]:.2f} A)")
        if convergence:
            ok = convergence.get("verdict") == "converged"
            band = convergence.get("band_A")
            if band:
                ax.axvspan(1.0 / band[0], 1.0 / band[1], color="g" if ok else "r", alpha=0.08)
            ax.text(0.02, 0.02, "halves " + str(convergence.get("verdict", "?")).upper(), transform=ax.transAxes,
                    color="g" if ok else "r", fontsize=11, fontweight="bold")
        ax.set_ylim(-0.1, 1.05)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        return plotter

    def _showConvergence(self, paramName=None):
        log = self.protocol._readLog()
        if not log:
            return self._errorView(f"{self.protocol._getJobDir(C.OUT_LOG)} is missing or empty")
        return [self.plotConvergence(log)]

    @staticmethod
    def plotConvergence(log):
        plotter = Plotter(x=1, y=2, windowTitle="Convergence", figsize=(10, 4))
        axRes = plotter.createSubPlot("Resolution per iteration", "Iteration", "Resolution (A)")
        axEss = plotter.createSubPlot("3D effective sample size", "Iteration", "ESS")
        for half in sorted({str(e["half"]) for e in log}):
            entries = [e for e in log if str(e["half"]) == half]
            it = [e["iteration"] for e in entries]
            axRes.plot(it, [e["resolution_A"] for e in entries], label=f"half {half}")
            axEss.semilogy(it, [max(float(e["ess"]), 1e-3) for e in entries], label=f"half {half}")
        axRes.invert_yaxis()
        axRes.legend(fontsize=8)
        axEss.legend(fontsize=8)
        return plotter

    def _showSlices(self, paramName=None):
        maps = [self.protocol._getJobDir(f) for f in (C.OUT_HALF_A, C.OUT_HALF_B)]
        missing = [m for m in maps if not os.path.exists(m)]
        if missing:
            return self._errorView(f"{missing[0]} does not exist: the job has not finished")
        return [self.plotSlices(maps)]

    @staticmethod
    def plotSlices(mapFiles, names=("A", "B")):
        from ..engine.io import read_mrc

        plotter = Plotter(x=len(mapFiles), y=3, windowTitle="Half-map central slices", figsize=(9, 6))
        for name, fn in zip(names, mapFiles):
            vol, _ = read_mrc(fn)
            D = vol.shape[0]
            for axis, sl in zip("zyx", (vol[D // 2], vol[:, D // 2], vol[:, :, D // 2])):
                ax = plotter.createSubPlot(f"half {name}: {axis} = centre", "", "")
                ax.imshow(sl, cmap="gray", origin="lower")
                ax.set_axis_off()
        return plotter
