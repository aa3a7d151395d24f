"""A small FHIR server for tests and local trials: transactions with conditional create.

It accepts what :class:`bot.caselog.fhir.FhirSink` sends (``POST [base]`` with a transaction
Bundle), parses every resource with the ``fhir.resources.R4B`` models (anything that does not
validate is answered 400 with an OperationOutcome and nothing is stored), honours
``ifNoneExist`` on ``identifier=system|value`` and on ``url=…&version=…`` (an existing match is
answered ``200 OK`` and nothing is created) and keeps what it stored in memory. ``GET
[base]/[type]`` lists the stored resources of a type as a searchset Bundle. It is not a FHIR
server for production: one bearer token at most, no persistence, no other interactions.
"""

from __future__ import annotations

import hmac
import itertools
from collections import defaultdict
from urllib.parse import parse_qsl

from aiohttp import web
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.resource import Resource
from pydantic import ValidationError

MEDIA_TYPE = "application/fhir+json"


class FakeFhirServer:
    """The state behind :meth:`app`: stored resources per type, and every request's outcome."""

    def __init__(self, *, token: str = "") -> None:
        """Start empty; with ``token``, every request must carry ``Authorization: Bearer``."""
        self._token = token
        self.resources: defaultdict[str, list[Resource]] = defaultdict(list)
        self.transactions = 0  # accepted transaction Bundles (including all-repeat ones)
        self.rejected: list[str] = []  # why requests were refused (validation messages)
        self._ids = itertools.count(1)

    def app(self) -> web.Application:
        """The aiohttp application serving this state at ``/fhir``."""
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_post("/fhir", self._transaction)
        app.router.add_get("/fhir/{type}", self._search)
        return app

    def find(self, resource_type: str, query: str) -> Resource | None:
        """The stored resource of ``resource_type`` that an ``ifNoneExist`` query matches."""
        params = dict(parse_qsl(query, keep_blank_values=True))
        for stored in self.resources[resource_type]:
            if _matches(stored, params):
                return stored
        return None

    def _authorised(self, request: web.Request) -> bool:
        if not self._token:
            return True
        given = request.headers.get("Authorization", "").encode()
        return hmac.compare_digest(given, f"Bearer {self._token}".encode())

    async def _transaction(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response(_outcome("login"), status=401, content_type=MEDIA_TYPE)
        try:
            bundle = Bundle.model_validate_json(await request.read())
        except (ValidationError, ValueError) as exc:
            return self._refuse(str(exc))
        if bundle.type != "transaction":
            return self._refuse("only transaction Bundles are accepted")
        # Check everything before storing anything: a transaction is all or nothing.
        planned: list[tuple[Resource, Resource | None]] = []
        for entry in bundle.entry or []:
            resource, req = entry.resource, entry.request
            if resource is None or req is None or req.method != "POST":
                return self._refuse("each entry must be a POST with a resource")
            if req.url != resource.get_resource_type():
                return self._refuse(f"request.url {req.url} is not the resource's type")
            existing = self.find(req.url, req.ifNoneExist) if req.ifNoneExist else None
            planned.append((resource, existing))
        answers = []
        for resource, existing in planned:
            if existing is None:
                resource.id = str(next(self._ids))
                self.resources[resource.get_resource_type()].append(resource)
                answers.append({"status": "201 Created", "location": _location(resource)})
            else:
                answers.append({"status": "200 OK", "location": _location(existing)})
        self.transactions += 1
        reply = {
            "resourceType": "Bundle",
            "type": "transaction-response",
            "entry": [{"response": answer} for answer in answers],
        }
        return web.json_response(reply, content_type=MEDIA_TYPE)

    async def _search(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response(_outcome("login"), status=401, content_type=MEDIA_TYPE)
        kind = request.match_info["type"]
        found = [
            r for r in self.resources.get(kind, []) if _matches(r, dict(request.query.items()))
        ]
        reply = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(found),
            "entry": [{"resource": r.model_dump(mode="json", exclude_none=True)} for r in found],
        }
        return web.json_response(reply, content_type=MEDIA_TYPE)

    def _refuse(self, why: str) -> web.Response:
        self.rejected.append(why)
        return web.json_response(_outcome("invalid", why), status=400, content_type=MEDIA_TYPE)


def _outcome(code: str, why: str = "") -> dict[str, object]:
    issue = {"severity": "error", "code": code, "diagnostics": why[:500] or code}
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def _location(resource: Resource) -> str:
    return f"{resource.get_resource_type()}/{resource.id}"


def _matches(resource: Resource, params: dict[str, str]) -> bool:
    """Only the search parameters the sink uses: identifier (token), url and version."""
    for name, wanted in params.items():
        if name == "identifier":
            identifiers = getattr(resource, "identifier", None) or []
            if not isinstance(identifiers, list):
                identifiers = [identifiers]
            system, _, value = wanted.rpartition("|")
            if not any(i.system == system and i.value == value for i in identifiers):
                return False
        elif name in ("url", "version"):
            if str(getattr(resource, name, None)) != wanted:
                return False
        else:
            return False  # an unknown parameter: match nothing rather than everything
    return True
