"""pyworkflow's test runner (what ``scipion3 tests`` runs) lists the plugin's Scipion-style suite and runs it.

The plugin-discovery class runs here; the protocol and GUI classes share their cases with the pytest suite
(``test_scipion_protocol.py``, ``test_scipion_gui.py``) and run in full through this runner in CI, from the
installed wheel (``.ci/wheel_check.sh``).
"""
from scipion_abinitrefine.tests.scipion_env import pyworkflow_tests

SUITE = "scipion_abinitrefine.tests.test_scipion_suite"
CLASSES = ("TestAbInitRefinePlugin", "TestAbInitRefineProtocol", "TestAbInitRefineGui")


def test_runner_lists_the_scipion_style_classes(tmp_path):
    rc, out = pyworkflow_tests(tmp_path, ["--show", "--mode", "classes", "--grep", "abinitrefine"], timeout=300)
    assert rc == 0, out[-4000:]
    for cls in CLASSES:
        assert f"{SUITE}.{cls}" in out, out[-4000:]


def test_runner_runs_the_plugin_class(tmp_path):
    rc, out = pyworkflow_tests(tmp_path, [f"{SUITE}.TestAbInitRefinePlugin"], timeout=300)
    assert rc == 0 and "TestAbInitRefinePlugin" in out, out[-6000:]
