"""``plan check`` of a compose file against a real Docker daemon (issue 12): a mapping
is live only when the container of *that* compose service (and project) publishes it.

The daemon is the shared ``docker_lab`` (tests/_docker.py): compose project ``shop``
with ``web`` (18082:80) and ``db`` (nothing published), and the plain ``docker run``
container ``web`` (127.0.0.1:18080:80, 18081:80). portkit is pointed at it with
``DOCKER_HOST`` and ``--netns``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests._docker import DockerLab
from tests.conftest import run_portkit

pytestmark = pytest.mark.netns


def _check(lab: DockerLab, tmp_path: Path, text: str, *args: str) -> tuple[int, list[Any]]:
    compose = tmp_path / "compose.yaml"
    compose.write_text(text)
    done = run_portkit(
        "plan",
        "check",
        str(compose),
        "--netns",
        lab.ns,
        "--json",
        *args,
        env={"DOCKER_HOST": f"unix://{lab.sock}"},
    )
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


SHOP = "services:\n  web:\n    ports: ['18082:80']\n  db:\n    expose: ['5432']\n"


def test_the_service_that_publishes_the_port_is_live(docker_lab: DockerLab, tmp_path: Path) -> None:
    code, results = _check(docker_lab, tmp_path, SHOP, "-p", "shop")
    assert code == 0, results
    web = results[0]
    assert web["status"] == "ok"
    assert "published by container shop_web_1" in web["detail"]
    assert results[1]["status"] == "skip"  # expose: not on the host


def test_the_project_comes_from_the_environment_too(docker_lab: DockerLab, tmp_path: Path) -> None:
    compose = tmp_path / "compose.yaml"
    compose.write_text(SHOP)
    done = run_portkit(
        "plan",
        "check",
        str(compose),
        "--netns",
        docker_lab.ns,
        "--json",
        env={"DOCKER_HOST": f"unix://{docker_lab.sock}", "COMPOSE_PROJECT_NAME": "shop"},
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_another_projects_container_does_not_count(docker_lab: DockerLab, tmp_path: Path) -> None:
    """Before issue 12 any listener on 18082 made this ok."""
    code, results = _check(docker_lab, tmp_path, SHOP, "-p", "blog")
    assert code == 1
    assert results[0]["status"] == "miss"
    assert results[0]["detail"] == (
        "published by container shop_web_1 (compose shop/web), not by service web of project blog"
    )


def test_another_service_of_the_project_does_not_count(
    docker_lab: DockerLab, tmp_path: Path
) -> None:
    text = "services:\n  api:\n    ports: ['18082:80']\n"
    code, results = _check(docker_lab, tmp_path, text, "-p", "shop")
    assert code == 1
    assert "not by service api of project shop" in results[0]["detail"]


def test_a_plain_container_is_not_a_compose_service(docker_lab: DockerLab, tmp_path: Path) -> None:
    """``docker run -p 18081:80 --name web``: a container named web, but no compose labels."""
    text = "services:\n  web:\n    ports: ['18081:80', '127.0.0.1:18080:80']\n"
    code, results = _check(docker_lab, tmp_path, text, "-p", "shop")
    assert code == 1
    assert [r["status"] for r in results] == ["miss", "miss"]
    assert results[0]["detail"].startswith("published by container web, not by service web")


def test_a_port_nobody_publishes_is_missing(docker_lab: DockerLab, tmp_path: Path) -> None:
    text = "services:\n  web:\n    ports: ['18099:80']\n"
    code, results = _check(docker_lab, tmp_path, text, "-p", "shop")
    assert code == 1
    assert results[0]["detail"] == (
        "nothing listens here and no container of service web of project shop publishes it"
    )
