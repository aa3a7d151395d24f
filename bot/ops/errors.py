"""Errors of the operations commands; messages tell the operator what to do, without secrets.

::

    OpsError
    ├── BackupError   a backup or restore cannot go ahead (damaged, wrong keys, target in use)
    └── PgToolError   pg_dump / pg_restore missing, too old for the server, or failed
"""

from __future__ import annotations


class OpsError(Exception):
    """Base class; ``str()`` is meant for the operator."""


class BackupError(OpsError):
    """The backup or restore cannot go ahead; the message says why."""


class PgToolError(OpsError):
    """A PostgreSQL tool is missing, too old, or failed; the message says what to do."""
