# The Scipion-style suite needs Scipion's environment in its own process: pytest does not collect it;
# test_scipion_runner.py runs it through pyworkflow's runner (as `scipion3 tests` does), and CI runs it in full.
collect_ignore = ["test_scipion_suite.py"]


def suite_threads() -> int:
    """The CPUs of this pytest process: all of them, or its share under pytest-xdist (``make test``: a worker
    per core), so that the workers' numba threads (OpenMP, which spins while idle) do not oversubscribe."""
    import os

    from scipion_abinitrefine.engine import threads

    return max(1, threads.available() // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))


def pytest_configure(config):
    """In-process jobs run with the thread set-up the command line gives them (engine/threads.py)."""
    from scipion_abinitrefine.engine import threads

    threads.limit(suite_threads())


# The files that take minutes, slowest first (measured on 2 cores): under pytest-xdist (``make test``: one
# worker per core, a file's tests on one worker) they start before the many short files, which then fill the
# gaps, instead of one of them starting last and running alone.
SLOW_FILES = ("test_starts.py", "test_job.py", "test_scipion_protocol.py", "test_safety.py",
              "test_relion_chain.py", "test_sgd.py")


def pytest_collection_modifyitems(session, config, items):
    """Slow files first; the order within a file is kept (a stable sort on the file alone)."""
    rank = {name: i for i, name in enumerate(SLOW_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FILES)))
