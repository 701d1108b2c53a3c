"""docker/: the compose file is valid and has the services the scale-out set-up promises.

Where the Docker CLI is installed, ``config`` of its compose plugin (``docker compose``) or, without the
plugin, of Debian's ``docker-compose`` (which ``make compose`` installs next to the CLI) validates the
file; no Docker engine is needed, and none is started. The structure is checked with a YAML parser always.
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


def _compose_command() -> list[str] | None:
    """``docker compose``, else ``docker-compose``; None without the Docker CLI."""
    if shutil.which("docker") is None:
        return None
    if subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30, check=False).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose") is not None:
        return ["docker-compose"]
    pytest.fail("the Docker CLI is installed but neither `docker compose` nor `docker-compose` (run `make compose`)")


def _services() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text())["services"])


class TestComposeFile:
    """docker/compose.yaml."""

    @pytest.mark.skipif(shutil.which("docker") is None, reason="the Docker CLI is not installed")
    def test_docker_compose_config_accepts_the_file(self) -> None:
        """`docker compose -p zorgpad -f docker/compose.yaml config` exits 0 and resolves all six services."""
        command = _compose_command()
        assert command is not None
        result = subprocess.run([*command, "-p", "zorgpad", "-f", str(COMPOSE), "config", "--services"],
                                cwd=REPO, capture_output=True, text=True, timeout=60, check=False)

        assert 0 == result.returncode, result.stderr
        assert {"postgres", "prefect", "migrate", "api", "worker-1", "worker-2"} == set(result.stdout.split())

    def test_an_invalid_file_is_refused_by_the_same_check(self, tmp_path: Path) -> None:
        """The check can fail: a service with an unknown key is refused."""
        command = _compose_command()
        if command is None:
            pytest.skip("the Docker CLI is not installed")
        broken = tmp_path / "compose.yaml"
        broken.write_text("services:\n  api:\n    image: zorgpad:0.1.0\n    restart_policy_typo: always\n")
        result = subprocess.run([*command, "-f", str(broken), "config", "--quiet"], cwd=tmp_path,
                                capture_output=True, text=True, timeout=60, check=False)

        assert 0 != result.returncode
        assert "restart_policy_typo" in result.stderr

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
