"""Fixtures shared by every capability's tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import pytest
from hypothesis import settings

# Property tests explore new random inputs on every developer run; CI (CI=true) replays a
# fixed derandomised set so that a landing never depends on luck. No deadlines: these
# machines are shared, and timings are never asserted in tests.
settings.register_profile("dev", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

Runner = Callable[..., subprocess.CompletedProcess[str]]


def run_portkit(
    *args: str, env: dict[str, str] | None = None, input: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the real entry point (``python -m portkit``) and capture its output."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "portkit", *args],
        capture_output=True,
        text=True,
        env=full_env,
        input=input,
        timeout=timeout,
    )


@pytest.fixture
def cli() -> Runner:
    """``cli("lookup", "22")`` runs portkit as a user would and returns the result."""
    return run_portkit
