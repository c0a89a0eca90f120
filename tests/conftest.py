"""Fixtures shared by every capability's tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import settings

# Property tests explore new random inputs on every developer run; CI (CI=true) replays a
# fixed derandomised set so that a landing never depends on luck. No deadlines: these
# machines are shared, and timings are never asserted in tests.
settings.register_profile("dev", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

Runner = Callable[..., subprocess.CompletedProcess[str]]

#: Test modules that need nothing Linux-only (no namespaces, no root, no /proc, no real
#: peers): the public CI runs them on macOS and Windows too (``pytest -m portable``).
PORTABLE_MODULES = frozenset(
    {
        "test_constants",
        "test_model",
        "test_registry",
        "test_know_cli",
        "test_port_knowledge",
        "test_probe_plan",
        "test_forward_spec",
        "test_plan_spec",
        "test_plan_readers",
        "test_plan_rules",
        "test_plan_corpus",
        "test_plan_properties",
        "test_plan_schema",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.module is not None and item.module.__name__.rpartition(".")[2] in PORTABLE_MODULES:
            item.add_marker(pytest.mark.portable)


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


# --- real Docker daemons, once per session, each in its own network namespace -----------
# (tests/_docker.py). A test that needs one fails with the daemon's log if it cannot start.


@pytest.fixture(scope="session")
def docker_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """dockerd with the userland proxy and its containers (``tests._docker.default_lab``)."""
    from tests._docker import DockerError, default_lab

    try:
        lab = default_lab(f"pkdock{os.getpid()}", str(tmp_path_factory.mktemp("compose")))
    except (DockerError, OSError, subprocess.SubprocessError) as exc:
        pytest.fail(f"the Docker daemon for the tests did not start: {exc}", pytrace=False)
    yield lab
    lab.stop()


@pytest.fixture(scope="session")
def docker_lab_noproxy() -> Iterator[Any]:
    """dockerd with ``--userland-proxy=false`` (``tests._docker.noproxy_lab``)."""
    from tests._docker import DockerError, noproxy_lab

    try:
        lab = noproxy_lab(f"pkdockn{os.getpid()}")
    except (DockerError, OSError, subprocess.SubprocessError) as exc:
        pytest.fail(f"the Docker daemon for the tests did not start: {exc}", pytrace=False)
    yield lab
    lab.stop()
