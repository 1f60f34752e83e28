"""Scipion-style tests (pyworkflow ``BaseTest`` / unittest): what ``scipion3 tests`` discovers and runs.

    scipion3 tests --grep abinitrefine                                       # list
    scipion3 tests scipion_abinitrefine.tests.test_scipion_suite             # run (the GUI class needs a display)

The cases and their checks are the pytest suite's (``protocol_cases.py``, ``test_scipion_gui.py``), run here in
the Scipion process itself. pytest does not collect this module (see ``conftest.py``); ``test_scipion_runner.py``
runs it through pyworkflow's runner.
"""
import os
import tempfile

from pyworkflow.tests import BaseTest

from scipion_abinitrefine.tests import protocol_cases as C


class TestAbInitRefinePlugin(BaseTest):
    """Scipion finds the plugin, its protocol, viewer and wizards, and the protocol's citations resolve."""

    def test_discovery_and_citations(self):
        from pwem import Domain
        from pyworkflow.viewer import DESKTOP_TKINTER

        from scipion_abinitrefine.protocols import ProtAbInitioRefine
        from scipion_abinitrefine.tests.scipion_env import assert_plugin_discovered

        assert_plugin_discovered()
        self.assertIn("ProtAbInitioRefine", Domain.getProtocols())
        viewer = Domain.getViewers().get("AbInitioRefineViewer")
        self.assertIsNotNone(viewer, "the viewer is not discovered")
        self.assertIn(ProtAbInitioRefine, viewer._targets)
        self.assertIn(DESKTOP_TKINTER, viewer._environments)
        self.assertIn("AbInitRefineNyquistWizard", [w.__name__ for w in Domain.getWizards().values()])
        # the plugin's bibtex parses and holds every reference the protocol cites (DOIs of the two methods)
        bib = Domain.getPluginModule("scipion_abinitrefine")._bibtex
        for key in Domain.getPluginModule("scipion_abinitrefine")._references:
            self.assertIn(key, bib)
        self.assertIn("10.1038/nmeth.4169", bib["Punjani2017"]["doi"])
        self.assertIn("10.1101/2025.09.08.674935", bib["Kim2025"]["doi"])


class TestAbInitRefineProtocol(BaseTest):
    """The protocol end to end on a tiny simulated set (import sqlite, refine, read back)."""

    @classmethod
    def setUpClass(cls):
        folder = tempfile.mkdtemp(prefix="abinitrefine_scipion_")
        star, sqlite = C.simulate_data(os.path.join(folder, "data"))
        cls.run_info = C.child_run(star, sqlite, C.TINY)
        cls.out = C.child_read(cls.run_info["prot_id"])

    def test_validation_names_the_parameter(self):
        C.check_validation(self.run_info)

    def test_used_and_unused_particles_partition_the_input(self):
        C.check_partition(self.out)

    def test_transforms_are_the_job_poses(self):
        C.check_transforms(self.out)

    def test_relion_converter_keeps_poses_and_half_sets(self):
        C.check_relion_chain(self.out)

    def test_volume_half_maps_and_fsc(self):
        C.check_volume_and_fsc(self.out)

    def test_zz_continue_passes_the_checkpoint_to_the_job(self):  # last (unittest sorts by name): it restarts
        C.check_continue_args(C.child_continue_args(self.run_info["prot_id"]))


class TestAbInitRefineGui(BaseTest):
    """The protocol form, its wizards and the viewer's plots (needs an X display: xvfb-run headless)."""

    def test_form_wizards_and_viewer_plots(self):
        from scipion_abinitrefine.tests.test_scipion_gui import check_gui, child_gui

        if not os.environ.get("DISPLAY"):
            self.fail("no X display: run the GUI tests under xvfb-run (apt-get install -y xvfb) or a desktop")
        folder = tempfile.mkdtemp(prefix="abinitrefine_gui_")
        check_gui(child_gui(os.path.join(folder, "data"), os.path.join(folder, "png")))
