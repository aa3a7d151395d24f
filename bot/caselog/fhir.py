"""The FHIR R4 sink: one transaction Bundle per participation entry, POSTed to the FHIR base URL.

Each Bundle holds the entry's resource (see :mod:`bot.caselog.fhir_resources`) as a conditional
create (``request.ifNoneExist: identifier=urn:stemme:participation-entry|<entry id>``) and, for
a check-in, the instrument's ``Questionnaire`` as a conditional create on ``url`` and
``version``. A redelivered entry therefore finds its earlier copy and creates nothing: filing is
idempotent on the entry id. A transaction is all or nothing, so a 2xx answer means everything in
it is filed; anything else (or a timeout, a refused connection) raises :class:`SinkError` and
the outbox tries again later.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.resource import Resource

from bot.caselog.fhir_resources import (
    DEFAULT_CASE_SYSTEM,
    conditional_query,
    entry_resource,
    full_url,
    questionnaire,
)
from bot.caselog.http_post import HttpPoster
from bot.caselog.sinks import SinkError
from prompts.instruments import Instrument

MEDIA_TYPE = "application/fhir+json"


def transaction(
    entry: Mapping[str, Any],
    *,
    instruments: Mapping[str, Instrument],
    case_system: str = DEFAULT_CASE_SYSTEM,
    verbatim: bool = False,
) -> Bundle:
    """The transaction Bundle that files ``entry``, validated with the R4B models.

    The Questionnaire is included when the instrument with the entry's version is loaded; an
    entry from an older version still names its canonical, but its Questionnaire cannot be
    rebuilt from a definition that has changed since.
    """
    resources: list[Resource] = []
    scores = entry.get("scores")
    if scores:
        instrument = instruments.get(str(scores["instrument"]))
        if instrument is not None and str(instrument.version) == str(scores["version"]):
            resources.append(questionnaire(instrument))
    resources.append(entry_resource(entry, case_system=case_system, verbatim=verbatim))
    return Bundle.model_validate(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": full_url(resource),
                    "resource": resource.model_dump(mode="json", exclude_none=True),
                    "request": {
                        "method": "POST",
                        "url": resource.get_resource_type(),
                        "ifNoneExist": conditional_query(resource),
                    },
                }
                for resource in resources
            ],
        }
    )


class FhirSink:
    """Files each entry on the municipality's FHIR server and returns only on a 2xx."""

    name = "fhir"

    def __init__(
        self,
        base_url: str,
        *,
        instruments: Mapping[str, Instrument],
        token: str = "",
        case_system: str = DEFAULT_CASE_SYSTEM,
        verbatim: bool = False,
        timeout: float = 10.0,
        ca_file: Path | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        """Set up the sink; no connection is made before the first entry.

        Args:
            base_url: The FHIR base URL (transactions are POSTed to it).
            instruments: The loaded instruments, to build Questionnaires from.
            token: A bearer token for the server, if it asks for one.
            case_system: The identifier system of the municipality's case references.
            verbatim: Whether the child's words may be filed (the municipality's policy).
            timeout: Seconds per attempt.
            ca_file: A private CA for the server's certificate.
            session: An aiohttp session to use (tests); otherwise the sink makes its own.
        """
        self.url = base_url.rstrip("/")
        self._instruments = instruments
        self._token = token
        self._case_system = case_system
        self._verbatim = verbatim
        self._http = HttpPoster(
            "fhir", self.url, timeout=timeout, ca_file=ca_file, session=session
        )

    async def deliver(self, entry: dict[str, Any]) -> None:
        try:
            bundle = transaction(
                entry,
                instruments=self._instruments,
                case_system=self._case_system,
                verbatim=self._verbatim,
            )
        except ValueError as exc:
            # pydantic's ValidationError is a ValueError; its text may quote the entry.
            raise SinkError(f"fhir: invalid {type(exc).__name__}") from None
        headers = {"Content-Type": MEDIA_TYPE, "Accept": MEDIA_TYPE}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        await self._http.post(bundle.model_dump_json(exclude_none=True).encode(), headers)

    async def aclose(self) -> None:
        await self._http.aclose()
