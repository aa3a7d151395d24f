"""Every HTTP endpoint, fuzzed from the hand-written description in ``docs/openapi.yaml``.

schemathesis generates requests from the description (valid and invalid ones) and sends them to
a real ``stemme serve`` process with the demo data and the sandbox providers. Each answer must be
documented for its endpoint, and never a 5xx. To get past the front door, part of the requests
carry what a real caller would have: the child's real link token on the web chat, and a correct
signature (with the demo's sandbox secrets) on the provider webhooks — so the parsers and the
whole inbound path are fuzzed too, not only the refusals.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance

from bot.providers import DEMO_MESSENGER_SECRET, DEMO_TELEGRAM_SECRET, DEMO_TWILIO_TOKEN
from channels.sms_forms import compute_signature
from tests.e2e.server import DemoInfo, ServerProcess

# One worker runs the whole module in order (`make test` uses --dist loadgroup): the last test
# reads what the fuzzing before it saw, and the module's server is started once, not per worker.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("openapi")]

DOCS = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
DESCRIPTION: dict[str, Any] = yaml.safe_load(DOCS.read_text(encoding="utf-8"))
schema = schemathesis.openapi.from_dict(DESCRIPTION)
CHECKS = [not_a_server_error, status_code_conformance]
# What the suite saw, per endpoint: the last test asserts the fuzzing got past the front door.
SEEN: Counter[tuple[str, int]] = Counter()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, DemoInfo]]:
    root = tmp_path_factory.mktemp("fuzz")
    server = ServerProcess(root / "data", root / "logs")
    info = server.demo()
    server.start()
    try:
        yield server, info
    finally:
        server.stop()


def _half(case: schemathesis.Case) -> bool:
    """A stable coin toss per generated case (so a failing example replays the same way)."""
    seed = json.dumps([case.path_parameters, case.query, repr(case.body)], default=str)
    return zlib.crc32(seed.encode()) % 2 == 0


def _sign(server: ServerProcess, path: str, kwargs: dict[str, Any]) -> None:
    """Sign the request the way the provider would (demo sandbox secrets)."""
    headers = kwargs.setdefault("headers", {})
    if path.startswith("/webhooks/twilio/"):
        form = kwargs.get("data")
        if not isinstance(form, dict):
            return
        pairs = [(str(k), str(v)) for k, v in form.items()]
        kwargs["data"] = urlencode(pairs)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        headers["X-Twilio-Signature"] = compute_signature(
            DEMO_TWILIO_TOKEN, server.base_url + path, pairs
        )
    elif path == "/webhooks/telegram":
        headers["X-Telegram-Bot-Api-Secret-Token"] = DEMO_TELEGRAM_SECRET
    elif path == "/webhooks/messenger" and kwargs.get("method") == "POST":
        body = kwargs.pop("json", None)
        raw = json.dumps(body).encode() if body is not None else kwargs.pop("data", b"") or b""
        if isinstance(raw, str):
            raw = raw.encode()
        kwargs["data"] = raw
        headers["Content-Type"] = "application/json"
        digest = hmac.new(DEMO_MESSENGER_SECRET.encode(), raw, hashlib.sha256).hexdigest()
        headers["X-Hub-Signature-256"] = "sha256=" + digest


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_endpoint_answers_as_documented(
    case: schemathesis.Case, service: tuple[ServerProcess, DemoInfo]
) -> None:
    server, info = service
    path = case.operation.path
    genuine = _half(case)
    if genuine and "token" in (case.path_parameters or {}):
        case.path_parameters["token"] = info.token
    kwargs = case.as_transport_kwargs(base_url=server.base_url)
    if genuine and path.startswith("/webhooks/"):
        _sign(server, path, kwargs)
    kwargs["allow_redirects"] = False
    kwargs["timeout"] = 15
    response = requests.request(**kwargs)
    SEEN[(f"{case.method} {path}", response.status_code)] += 1
    case.validate_response(response, checks=CHECKS)


def test_the_fuzzing_reached_the_inbound_path() -> None:
    """Signed webhooks and the real link were accepted at least sometimes, not only refused."""
    if not SEEN:
        pytest.fail("the fuzz test did not run first")
    accepted = {endpoint for (endpoint, status), _ in SEEN.items() if status == 200}
    for endpoint in (
        "GET /c/{token}",
        "POST /c/{token}/messages",
        "POST /webhooks/twilio/sms",
        "POST /webhooks/telegram",
        "POST /webhooks/messenger",
    ):
        assert endpoint in accepted, sorted(SEEN.items(), key=str)
