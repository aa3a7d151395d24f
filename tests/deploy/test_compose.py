"""deploy/compose.yaml and deploy/Caddyfile: the services promised, healthy, and no secrets."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$|MASTER_KEY|INDEX_KEY|AUTH", re.IGNORECASE)
REFERENCE = re.compile(r"^\$\{[A-Z0-9_]+(:?[?-][^}]*)?\}$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def stemme_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose["services"].items()
        if service.get("image") == "stemme:local" and service.get("command") != ["init"]
    }


def strings(node: object) -> list[str]:
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in [str(key), *strings(value)]]
    if isinstance(node, list):
        return [s for item in node for s in strings(item)]
    return [str(node)]


def test_two_stemme_processes_postgres_and_caddy(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert sorted(stemme_services(compose)) == ["stemme-1", "stemme-2"]
    assert services["postgres"]["image"].startswith("postgres:15")
    assert services["caddy"]["image"].startswith("caddy:2")
    # Migrations run once, before either process starts.
    assert services["migrate"]["command"] == ["init"]
    for service in stemme_services(compose).values():
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_every_long_running_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    for name in ("stemme-1", "stemme-2", "postgres", "caddy"):
        check = compose["services"][name]["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL") and not check.get("disable"), name
    for service in stemme_services(compose).values():
        assert "/healthz" in " ".join(service["healthcheck"]["test"])


def test_stemme_runs_read_only_unprivileged_with_keys_from_a_secret(
    compose: dict[str, Any],
) -> None:
    for service in stemme_services(compose).values():
        assert service["read_only"] is True
        assert any(mount.startswith("/tmp:") for mount in service["tmpfs"])
        assert service["user"].split(":")[0] not in ("0", "root")
        assert service["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in service["security_opt"]
        assert service["environment"]["STEMME_KEY_FILE"] == "/run/secrets/stemme_keyring"
        assert service["secrets"] == ["stemme_keyring"]
        assert service["environment"]["STEMME_MODE"] == "production"


def test_only_caddy_is_reachable_from_outside(compose: dict[str, Any]) -> None:
    published = {name for name, s in compose["services"].items() if s.get("ports")}
    assert published == {"caddy"}
    assert compose["networks"]["db"]["internal"] is True
    assert compose["services"]["postgres"]["networks"] == ["db"]


def test_no_secret_is_written_in_the_compose_file(compose: dict[str, Any]) -> None:
    for service in compose["services"].values():
        environment = service.get("environment", {})
        assert isinstance(environment, dict)
        for name, value in environment.items():
            if SECRET_NAME.search(name):
                allowed = name.endswith("_FILE") and str(value).startswith("/run/secrets/")
                assert allowed or REFERENCE.match(str(value)), name
    assert not [s for s in strings(compose) if re.search(r"://[^/\s:@]+:[^/\s@]+@", s)]
    for secret in compose["secrets"].values():
        assert secret["file"].startswith("./secrets/")  # git-ignored, never in the repository
    ignored = (DEPLOY.parent / ".gitignore").read_text(encoding="utf-8").split()
    assert {"deploy/.env", "deploy/secrets/"} <= set(ignored)


def test_caddy_proxies_to_both_processes_with_health_checks_and_no_access_log() -> None:
    caddy = shutil.which("caddy")
    assert caddy, "caddy missing: run scripts/install-system-deps.sh"
    result = subprocess.run(
        [caddy, "adapt", "--config", str(DEPLOY / "Caddyfile"), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "STEMME_PUBLIC_BASE_URL": "https://stemme.example.dk"},
    )
    assert result.returncode == 0, result.stderr
    assert "WARN" not in result.stderr  # e.g. "not formatted"
    [server] = json.loads(result.stdout)["apps"]["http"]["servers"].values()
    assert "logs" not in server  # request paths carry the child's chat token
    [route] = server["routes"]
    assert route["match"] == [{"host": ["stemme.example.dk"]}]
    handlers = [h for r in route["handle"][0]["routes"] for h in r["handle"]]
    [proxy] = [h for h in handlers if h["handler"] == "reverse_proxy"]
    assert [u["dial"] for u in proxy["upstreams"]] == ["stemme-1:8080", "stemme-2:8080"]
    assert proxy["health_checks"]["active"]["uri"] == "/healthz"
    [headers] = [h for h in handlers if h["handler"] == "headers"]
    assert "Strict-Transport-Security" in headers["response"]["set"]
