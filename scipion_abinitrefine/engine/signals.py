"""SIGINT/SIGTERM: a job stops after its current iteration with a checkpoint written (``--continue``
resumes it); a second signal stops it at once."""
from __future__ import annotations

import signal
import threading


class JobInterrupted(Exception):
    """SIGINT/SIGTERM: the job stopped after writing a checkpoint (``--continue`` resumes it)."""

    def __init__(self, signum: int, iteration: int, out_dir: str, saved: bool = True):
        self.signum, self.iteration, self.out_dir = signum, iteration, out_dir
        name = signal.Signals(signum).name
        what = f"checkpoint written at iteration {iteration}" if saved else "the last checkpoint is intact"
        super().__init__(f"interrupted by {name}: {what} in {out_dir}; continue with the same command "
                         "and --continue")


class StopOnSignals:
    """SIGINT/SIGTERM ask ``job`` to stop after its current iteration (a second one stops at once)."""

    def __init__(self, job):
        self.job = job
        self.previous = {}

    def _handler(self, signum, frame):
        if self.job.stop_signal is not None:
            raise JobInterrupted(signum, self.job.runs["A"].iteration, self.job.out, saved=False)
        self.job.stop_signal = signum
        self.job.say(f"{signal.Signals(signum).name}: stopping after this iteration and writing a checkpoint "
                     "(send it again to stop now)", flush=True)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):
        for sig, h in self.previous.items():
            signal.signal(sig, h)
        return False
