"""Headless Scipion for the plugin's tests (docs/design.rst, "Scipion layer and its tests").

Scipion reads its configuration from the environment when ``pyworkflow`` is first imported, so every
Scipion-side check runs in a child process whose environment is complete before it starts:

    result = run_child("scipion_abinitrefine.tests.test_scipion_x:_child_fn", root, {"arg": 1}, timeout=120)

The child (``python -m scipion_abinitrefine.tests.scipion_env MODULE:FUNC ARGS.json``) writes
``$SCIPION_HOME/config/hosts.conf`` with ``HostConfig.writeBasic``, calls ``FUNC(**args)`` and prints its
JSON-serialisable return value after a marker line; any exception makes the child (and the test) fail with
the child's output in the message. ``gui=True`` runs the child under ``xvfb-run``.

The Scipion-style suite (``test_scipion_suite.py``) runs through pyworkflow's own test runner in the same
throwaway installation:

    python -m scipion_abinitrefine.tests.scipion_env --pyworkflow-tests ROOT [--gui] scipion_abinitrefine.tests...
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

RESULT_MARK = "@@ABINITREFINE_TEST_RESULT@@"


def scipion_env(root) -> dict:
    """Environment for a throwaway Scipion installation under ``root``."""
    root = os.path.abspath(str(root))
    home = os.path.join(root, "scipion_home")
    for d in ("config", "software/em", "data/tests", "user_data"):
        os.makedirs(os.path.join(home, d), exist_ok=True)
    env = dict(os.environ)
    env.update(
        SCIPION_HOME=home,
        SCIPION_USER_DATA=os.path.join(home, "user_data"),
        SCIPION_TESTS=os.path.join(home, "data", "tests"),
        SCIPION_DOMAIN="pwem",
        SCIPION_PYTHON=sys.executable,
        SCIPION_TEST_NOSYNC="1",
        SCIPION_NOTIFY="False",
        SCIPION_HOSTS=os.path.join(home, "config", "hosts.conf"),
        # small, predictable compute: the machine is shared
        OMP_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
    )
    env.pop("DISPLAY", None)  # GUI children get their own virtual display
    return env


REQUIRE_GUI = "ABINITREFINE_REQUIRE_GUI"  # "1": a missing xvfb-run fails the GUI tests instead of skipping them
NO_XVFB = ("xvfb-run is not installed: the GUI tests (form, wizards, viewer) need a virtual X display; install it "
           "with 'apt-get install -y xvfb' (make test does this when run as root)")


def require_display():
    """Skip the calling pytest test, with the reason, when there is no xvfb-run (fail instead under CI)."""
    if shutil.which("xvfb-run"):
        return
    import pytest

    if os.environ.get(REQUIRE_GUI) == "1":
        pytest.fail(f"{NO_XVFB} ({REQUIRE_GUI}=1: CI must run the GUI tests)")
    pytest.skip(NO_XVFB)


def _xvfb_prefix():
    """Command prefix that gives the child a virtual X display, or raise with how to get one."""
    if shutil.which("xvfb-run"):
        return ["xvfb-run", "-a", "-s", "-screen 0 1280x1024x24"]
    raise RuntimeError(NO_XVFB)


def run_child(target: str, root, args: dict | None = None, timeout: float = 120, gui: bool = False):
    """Run ``target`` ("module:function") in a fresh Scipion child process; return its result."""
    root = os.path.abspath(str(root))
    os.makedirs(root, exist_ok=True)
    env = scipion_env(root)
    args_file = os.path.join(root, f"args_{target.split(':')[-1]}_{time.time_ns()}.json")
    with open(args_file, "w") as f:
        json.dump(args or {}, f)
    cmd = [sys.executable, "-m", "scipion_abinitrefine.tests.scipion_env", target, args_file]
    if gui:
        cmd = _xvfb_prefix() + cmd
    proc = subprocess.Popen(cmd, env=env, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the child's whole session (xvfb-run, Xvfb, protocol runs)
        out, _ = proc.communicate()
        raise AssertionError(f"{target} did not finish in {timeout} s; output:\n{out[-6000:]}") from None
    if proc.returncode != 0 or RESULT_MARK not in out:
        raise AssertionError(f"{target} failed (exit {proc.returncode}); output:\n{out[-8000:]}")
    return json.loads(out.rsplit(RESULT_MARK, 1)[1].strip().splitlines()[0])


def pyworkflow_tests(root, args, timeout: float = 900, gui: bool = False):
    """Run pyworkflow's test runner (what ``scipion3 tests ARGS`` runs) in a throwaway Scipion under ``root``.

    Returns ``(exit code, output)``; ``gui=True`` gives it a virtual X display.
    """
    root = os.path.abspath(str(root))
    env = scipion_env(root)
    subprocess.run([sys.executable, "-c", "import os; from pyworkflow.protocol import HostConfig; "
                    "HostConfig.writeBasic(os.environ['SCIPION_HOSTS'])"], env=env, check=True, timeout=120)
    cmd = [sys.executable, "-m", "pyworkflow.apps.pw_run_tests"] + list(args)
    if gui:
        cmd = _xvfb_prefix() + cmd
    proc = subprocess.run(cmd, env=env, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, start_new_session=True)
    return proc.returncode, proc.stdout


def _child_main(argv):
    target, args_file = argv[1], argv[2]
    for var in ("SCIPION_HOME", "SCIPION_USER_DATA", "SCIPION_DOMAIN"):
        if not os.environ.get(var):
            raise SystemExit(f"{var} is not set: run this through scipion_env.run_child")
    from pyworkflow.protocol import HostConfig

    hosts = os.environ["SCIPION_HOSTS"]
    if not os.path.exists(hosts):
        HostConfig.writeBasic(hosts)
    import importlib

    mod_name, func_name = target.split(":")
    func = getattr(importlib.import_module(mod_name), func_name)
    with open(args_file) as f:
        kwargs = json.load(f)
    result = func(**kwargs)
    sys.stdout.flush()
    print(RESULT_MARK)
    print(json.dumps(result))
    sys.stdout.flush()


# ----------------------------------------------------------------------------------------------------------
# helpers used inside the children
# ----------------------------------------------------------------------------------------------------------

def assert_plugin_discovered():
    """Fail clearly when Scipion cannot discover the plugin (protocol runs would fail obscurely later)."""
    from pwem import Domain

    if "scipion_abinitrefine" not in Domain.getPlugins():
        raise RuntimeError(
            "Scipion did not discover the plugin: pyworkflow imports each 'pyworkflow.plugin' entry point by its "
            "NAME, so setup.py must declare 'scipion_abinitrefine = scipion_abinitrefine' (and the package be "
            f"reinstalled); discovered plugins: {sorted(Domain.getPlugins())}")


def new_project(name, require_plugin=True):
    """Create (replacing) a project in the throwaway SCIPION_USER_DATA and chdir into it."""
    from pyworkflow.project import Manager

    if require_plugin:
        assert_plugin_discovered()

    manager = Manager()
    if manager.hasProject(name):
        manager.deleteProject(name)
    project = manager.createProject(name)
    os.chdir(project.path)
    return project


def load_project(name):
    from pyworkflow.project import Manager

    project = Manager().loadProject(name)
    os.chdir(project.path)
    return project


def launch(project, prot, timeout=600):
    """Launch ``prot`` and wait; raise with its log tail unless it finished."""
    project.launchProtocol(prot, wait=True)
    t0 = time.time()
    while prot.isActive() and time.time() - t0 < timeout:  # wait=True normally suffices
        time.sleep(0.5)
        prot = project.getProtocol(prot.getObjId())
    if not prot.isFinished():
        logs = []
        for fn in (prot.getStdoutLog(), prot.getStderrLog(), prot.getLogPaths()[-1]):
            if fn and os.path.exists(fn):
                with open(fn) as f:
                    logs.append(f"--- {fn}\n{f.read()[-5000:]}")
        raise RuntimeError(f"protocol {prot.getRunName()} ended with status {prot.getStatus()}: "
                           f"{prot.getErrorMessage()}\n" + "\n".join(logs))
    return prot


if __name__ == "__main__":
    if sys.argv[1:2] == ["--pyworkflow-tests"]:  # python -m ...scipion_env --pyworkflow-tests ROOT [--gui] ARGS
        rest = sys.argv[3:]
        gui = rest[:1] == ["--gui"]
        rc, out = pyworkflow_tests(sys.argv[2], rest[1:] if gui else rest, gui=gui)
        print(out)
        sys.exit(rc)
    _child_main(sys.argv)
