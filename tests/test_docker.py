"""docker/: the compose file is valid and has the services the scale-out set-up promises.

``docker compose config`` validates it when the Docker CLI and its compose plugin are installed (no
Docker engine is needed, and none is started); the structure is checked with a YAML parser always.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
COMPOSE = REPO / "docker" / "compose.yaml"
DOCKERFILE = REPO / "docker" / "Dockerfile"


def _compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30,
                          check=False).returncode == 0


def _services() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text())["services"])


class TestComposeFile:
    """docker/compose.yaml."""

    @pytest.mark.skipif(not _compose_available(), reason="the docker CLI with its compose plugin is not installed")
    def test_docker_compose_config_accepts_the_file(self) -> None:
        """`docker compose -f docker/compose.yaml config` exits 0."""
        result = subprocess.run(["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"], cwd=REPO,
                                capture_output=True, text=True, timeout=60, check=False)

        assert 0 == result.returncode, result.stderr

    def test_it_runs_postgresql_a_prefect_server_the_api_and_two_workers(self) -> None:
        """The five long-running services are there, and the workers run `zorgpad worker`."""
        services = _services()

        assert {"postgres", "prefect", "api", "worker-1", "worker-2"} <= set(services)
        assert ["worker", "--interval", "10"] == services["worker-1"]["command"]
        assert services["worker-1"]["command"] == services["worker-2"]["command"]

    def test_every_long_running_service_has_a_health_check(self) -> None:
        """postgres, prefect, api and both workers declare a health check test."""
        services = _services()

        assert [] == [name for name in ("postgres", "prefect", "api", "worker-1", "worker-2")
                      if not services[name].get("healthcheck", {}).get("test")]

    def test_the_workers_and_the_api_share_one_postgresql_database(self) -> None:
        """Every Zorgpad service gets the same postgresql:// ZORGPAD_DATABASE_URL and the Prefect API URL."""
        services = _services()
        urls = {services[name]["environment"]["ZORGPAD_DATABASE_URL"] for name in ("api", "worker-1", "worker-2")}

        assert 1 == len(urls)
        assert next(iter(urls)).startswith("postgresql://")
        assert {"http://prefect:4200/api"} == {services[n]["environment"]["PREFECT_API_URL"]
                                               for n in ("worker-1", "worker-2")}


class TestDockerfile:
    """docker/Dockerfile."""

    def test_the_image_is_slim_pinned_and_runs_as_a_non_root_user(self) -> None:
        """The base is an exact slim Python tag, packages come from requirements.lock, USER is not root."""
        text = DOCKERFILE.read_text()
        base = re.search(r"^FROM (\S+)", text, flags=re.M)
        users = re.findall(r"^USER (\S+)", text, flags=re.M)

        assert base is not None
        assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base.group(1)), base.group(1)
        assert "-r requirements.lock" in text
        assert users
        assert users[-1] not in ("root", "0")
