# The Scipion-style suite needs Scipion's environment in its own process: pytest does not collect it;
# test_scipion_runner.py runs it through pyworkflow's runner (as `scipion3 tests` does), and CI runs it in full.
collect_ignore = ["test_scipion_suite.py"]


def pytest_configure(config):
    """In-process jobs run with the thread set-up the command line gives them (engine/threads.py)."""
    from scipion_abinitrefine.engine import threads

    threads.limit(0)
