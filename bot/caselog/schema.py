"""The published JSON Schema of a participation entry, and the route that serves it.

The canonical file ships inside the package (``participation-entry.schema.json``, package data);
``docs/participation-entry.schema.json`` is the same bytes for readers of the repository, and a
test keeps the two identical.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from aiohttp import web

SCHEMA_PATH = "/api/schema/participation-entry"
MEDIA_TYPE = "application/schema+json"


@cache
def schema_text() -> str:
    """The schema as published (UTF-8 JSON)."""
    return (
        resources.files("bot.caselog")
        .joinpath("participation-entry.schema.json")
        .read_text(encoding="utf-8")
    )


def schema() -> dict[str, Any]:
    """The schema, parsed."""
    value = json.loads(schema_text())
    assert isinstance(value, dict)
    return value


async def serve_schema(request: web.Request) -> web.Response:
    """GET /api/schema/participation-entry: public, cacheable, no case data."""
    return web.Response(
        text=schema_text(),
        content_type=MEDIA_TYPE,
        charset="utf-8",
        headers={"Cache-Control": "public, max-age=3600"},
    )
