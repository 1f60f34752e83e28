"""Helpers shared by the benchmark scripts."""
from __future__ import annotations

import os
import subprocess


def git_rev() -> str:
    """Short revision of the checkout the benchmark runs from (rows of bench/results carry it); '' where
    there is no git (the GPU machine's copy of the tree)."""
    try:
        return subprocess.run(["git", "-C", os.path.dirname(os.path.abspath(__file__)), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""
