"""GUI pieces under a virtual X display (xvfb-run): plugin discovery, the protocol form, the wizards and
the viewer's plots.

The child process creates a throwaway project with a few imported particles (box 32, 4 A/px), then:
* checks that Scipion discovers the plugin, the protocol, its wizards and its viewer;
* builds the protocol's Tk form (FormWindow) and runs the two wizards through it;
* writes job outputs for a saved protocol with the engine's own FSC/report code (two noisy copies of a
  phantom as half-maps), builds the viewer's form and saves each of its plots as PNG.
Any exception (form, wizard or plot) fails the test.
"""
import os

from scipion_abinitrefine.tests.scipion_env import require_display, run_child

HERE = "scipion_abinitrefine.tests.test_scipion_gui"
BOX, APIX, N = 32, 4.0, 6


def _import_particles(project, folder):
    import numpy as np
    from pwem.objects import Acquisition, CTFModel, Particle, SetOfParticles
    from pwem.protocols import ProtImportParticles

    from scipion_abinitrefine.engine import io
    from scipion_abinitrefine.tests.scipion_env import launch

    os.makedirs(folder, exist_ok=True)
    io.write_stack(os.path.join(folder, "particles.mrcs"),
                   np.random.default_rng(0).normal(size=(N, BOX, BOX)).astype(np.float32), APIX)
    sqlite = os.path.join(folder, "particles.sqlite")
    parts = SetOfParticles(filename=sqlite)
    parts.setSamplingRate(APIX)
    acq = Acquisition(voltage=300.0, sphericalAberration=2.7, amplitudeContrast=0.1, magnification=50000)
    parts.setAcquisition(acq)
    parts.setHasCTF(True)
    for k in range(N):
        p = Particle(location=(k + 1, "particles.mrcs"))
        p.setObjId(k + 1)
        p.setCTF(CTFModel(defocusU=15000.0, defocusV=14000.0, defocusAngle=30.0))
        p.setAcquisition(acq.clone())
        parts.append(p)
    parts.setDim((BOX, BOX, 1))
    parts.write()
    imp = project.newProtocol(ProtImportParticles, importFrom=ProtImportParticles.IMPORT_FROM_SCIPION,
                              sqliteFile=sqlite, samplingRate=APIX, voltage=300.0, sphericalAberration=2.7,
                              amplitudeContrast=0.1, magnification=50000)
    return launch(project, imp, timeout=120)


def _write_job_outputs(job_dir):
    """Half-maps, fsc.csv and log.json as the job writes them, made with the engine's own functions."""
    import json

    import numpy as np

    from scipion_abinitrefine.engine import fsc, io, report, simulate

    os.makedirs(job_dir, exist_ok=True)
    rng = np.random.default_rng(1)
    truth = simulate.make_phantom(BOX, APIX)
    a = truth + 8.0 * truth.std() * rng.normal(size=truth.shape)  # noisy: FSC crosses 0.143 before Nyquist
    b = truth + 8.0 * truth.std() * rng.normal(size=truth.shape)
    io.write_mrc(os.path.join(job_dir, "half_map_A.mrc"), a, APIX)
    io.write_mrc(os.path.join(job_dir, "half_map_B.mrc"), b, APIX)
    io.write_mrc(os.path.join(job_dir, "map.mrc"), 0.5 * (a + b), APIX)
    report.write_fsc(job_dir, fsc.gold_standard_fsc(a, b, APIX), BOX, APIX)
    its = [dict(half=h, iteration=i, resolution_A=35.0 - 0.2 * i, minibatch=90, ess=50.0 / (1 + i), lr=0.4,
                seconds=0.1) for i in range(1, 60) for h in ("A", "B")]
    with open(os.path.join(job_dir, "log.json"), "w") as f:
        json.dump({"iterations": its, "alignments": []}, f)


def child_gui(folder, png_dir):
    import pyworkflow.gui.project  # noqa: F401  (must precede pyworkflow.gui.form)
    from pwem import Domain
    from pyworkflow.gui.form import FormWindow
    from pyworkflow.viewer import DESKTOP_TKINTER

    from scipion_abinitrefine.protocols import ProtAbInitioRefine
    from scipion_abinitrefine.tests.scipion_env import new_project
    from scipion_abinitrefine.viewers import AbInitioRefineViewer
    from scipion_abinitrefine.wizards import AbInitRefineMaskDiameterWizard, AbInitRefineNyquistWizard

    res = {}
    # --- discovery through the pyworkflow.plugin entry point
    res["plugins"] = sorted(Domain.getPlugins())
    res["protocol_found"] = "ProtAbInitioRefine" in Domain.getProtocols()

    project = new_project("abinitrefine_gui")
    imp = _import_particles(project, folder)
    prot = project.newProtocol(ProtAbInitioRefine)
    prot.inputParticles.set(imp)
    prot.inputParticles.setExtended("outputParticles")
    res["viewers"] = [v.__name__ for v in Domain.findViewers(prot, DESKTOP_TKINTER)]

    # --- the form and its wizards
    window = FormWindow("Protocol: " + prot.getClassLabel(), prot, lambda *a, **k: None)
    window.root.update()
    res["form_params"] = sorted(k for k in window.widgetDict if not k.startswith("_"))
    res["form_wizards"] = {k: v.__name__ for k, v in window.wizards.items()}
    res["gpu_widgets"] = hasattr(window, "useGpuVar") and hasattr(window, "gpuListVar")
    for param, wiz in (("maskDiameter", AbInitRefineMaskDiameterWizard), ("maxRes", AbInitRefineNyquistWizard)):
        window.wizards.get(param, wiz)().show(window)
        window.root.update()
        res[param] = float(window.widgetDict[param].get())
    res["form_shots"] = _form_screenshots(window, prot, png_dir)
    window.root.destroy()  # Window.close() would sys.exit() for a main window

    # --- the viewer on a saved protocol with job outputs
    project.saveProtocol(prot)
    _write_job_outputs(prot._getJobDir())
    viewer = AbInitioRefineViewer(project=project, protocol=prot)
    viewer.setProtocol(prot)
    vwin = FormWindow("Protocol Viewer: " + viewer.getClassName(), viewer, viewer._viewAll,
                      visualizeDict={k: viewer._visualizeParam for k in viewer._getVisualizeDict()},
                      visualizeMode=True)
    vwin.root.update()
    res["viewer_params"] = sorted(k for k in viewer._getVisualizeDict() if k in vwin.widgetDict)
    vwin.root.destroy()
    os.makedirs(png_dir, exist_ok=True)
    res["plots"] = {}
    for name, func in viewer._getVisualizeDict().items():
        views = func(name)
        plotter = views[0]
        fn = os.path.join(png_dir, f"{name}.png")
        plotter.savefig(fn)
        axes = plotter.getFigure().get_axes()
        res["plots"][name] = dict(file=fn, n_axes=len(axes), n_lines=sum(len(ax.get_lines()) for ax in axes),
                                  n_images=sum(len(ax.get_images()) for ax in axes),
                                  titles=[ax.get_title() for ax in axes])
        plotter.close()
    return res


def _shown(prot, group):
    """Names of the parameters a form group shows at the protocol's expert level, those of its lines too."""
    out = []
    for name, param in group.iterParams():
        if prot.evalParamExpertLevel(param) and prot.evalParamCondition(name):
            out.append(name)
            if hasattr(param, "iterParams"):  # a line: the fields on it
                out += _shown(prot, param)
    return out


def _form_screenshots(window, prot, png_dir):
    """Screenshots of every tab of the form at the Normal and Advanced levels (the virtual display's pixels),
    and the parameters each tab shows at that level."""
    from PIL import ImageGrab
    from pyworkflow.protocol.constants import LEVEL_ADVANCED, LEVEL_NORMAL

    os.makedirs(png_dir, exist_ok=True)
    root = window.root
    root.deiconify()  # the tests build the window without its main loop: map it to draw it
    root.geometry("900x760+0+0")
    root.update()
    notebook = window._sections[0].master
    sections = [s for s in prot.iterDefinitionSections() if s.getLabel() not in ("General", "Parallelization")]
    shots = {}
    for level, level_name in ((LEVEL_NORMAL, "normal"), (LEVEL_ADVANCED, "advanced")):
        prot.expertLevel.set(level)
        window._onExpertLevelChanged()
        for i, section in enumerate(sections):
            notebook.select(i)
            root.update()
            shown = _shown(prot, section)
            x, y = root.winfo_rootx(), root.winfo_rooty()
            img = ImageGrab.grab(bbox=(x, y, x + root.winfo_width(), y + root.winfo_height()))
            fn = os.path.join(png_dir, f"form_{level_name}_{section.getLabel().replace(' ', '_')}.png")
            img.save(fn)
            grey = img.convert("L")
            shots[f"{level_name}:{section.getLabel()}"] = dict(
                file=fn, shown=shown, size=list(img.size), extrema=list(grey.getextrema()))
    prot.expertLevel.set(LEVEL_NORMAL)
    window._onExpertLevelChanged()
    return shots


def check_gui(res):
    """What ``_child_gui`` found (shared with the Scipion-style suite, ``test_scipion_suite.py``)."""
    # discovery: the entry point name must be the package name for pyworkflow to import the plugin
    assert "scipion_abinitrefine" in res["plugins"], res["plugins"]
    assert res["protocol_found"]
    assert "AbInitioRefineViewer" in res["viewers"], res["viewers"]
    # form: every CryoSPARC-named parameter has a widget, and the wizards are attached to theirs
    for p in ("inputParticles", "numParticles", "maxRes", "initRes", "initMinibatch", "finalMinibatch",
              "initIters", "finalIters", "radiusStep", "targetESS", "symmetryGroup", "symmetryOrder", "maskDiameter",
              "alignRes", "numStarts",
              "numberOfThreads"):
        assert p in res["form_params"], (p, res["form_params"])
    # the form at both levels, every tab drawn: at Normal each shows what a user must look at, Advanced more
    shots = res["form_shots"]
    tabs = {k.split(":", 1)[1] for k in shots}
    assert tabs == {"Input", "Ab-initio", "Gold standard"}, tabs
    for key, shot in shots.items():
        assert os.path.getsize(shot["file"]) > 2000 and shot["size"][0] > 300, (key, shot)
        assert shot["extrema"][1] - shot["extrema"][0] > 100, (key, shot)  # widgets drawn, not a blank window
        assert shot["shown"], (key, shot)  # no empty tab, at the Normal level either
    for p in ("maxRes", "initRes", "numParticles", "symmetryGroup", "alignRes"):
        assert any(p in s["shown"] for k, s in shots.items() if k.startswith("normal:")), p
    normal = sum(len(s["shown"]) for k, s in shots.items() if k.startswith("normal:"))
    advanced = sum(len(s["shown"]) for k, s in shots.items() if k.startswith("advanced:"))
    assert advanced > normal, (normal, advanced)
    assert res["gpu_widgets"]  # the hidden useGpu/gpuList params give the form's GPU controls
    assert res["form_wizards"].get("maskDiameter") == "AbInitRefineMaskDiameterWizard"
    assert res["form_wizards"].get("maxRes") == "AbInitRefineNyquistWizard"
    assert abs(res["maskDiameter"] - round(BOX * APIX * 0.85, 1)) < 1e-6
    assert abs(res["maxRes"] - 2 * APIX) < 1e-6
    # viewer: its form builds and every plot is drawn to a PNG with content
    assert res["viewer_params"] == sorted(["showFsc", "showConvergence", "showSlices"])
    plots = res["plots"]
    for name, p in plots.items():
        assert os.path.getsize(p["file"]) > 5000, (name, p)
        with open(p["file"], "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    # RELION postprocess's four curves, the threshold line and the resolution marker
    assert plots["showFsc"]["n_lines"] == 6 and " A at 0.143" in plots["showFsc"]["titles"][0], plots["showFsc"]
    assert plots["showConvergence"]["n_axes"] == 2 and plots["showConvergence"]["n_lines"] == 4
    assert plots["showSlices"]["n_images"] == 6


def test_form_wizards_and_viewer_plots(tmp_path):
    require_display()
    check_gui(run_child(f"{HERE}:child_gui", tmp_path / "scipion",
                        dict(folder=str(tmp_path / "data"), png_dir=str(tmp_path / "png")), timeout=150, gui=True))
