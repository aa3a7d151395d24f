"""Identifiers: sortable UUIDv7 strings, and the documented id types used across Stemme."""

from __future__ import annotations

import os
import time
from typing import NewType

CaseId = NewType("CaseId", str)
"""A case in Stemme (UUIDv7). Not the municipality's case reference."""
MessageId = NewType("MessageId", str)
"""One message in or out (UUIDv7)."""
CaseworkerId = NewType("CaseworkerId", str)
"""A caseworker's account (UUIDv7)."""
IdentityId = NewType("IdentityId", str)
"""One channel identity of a child: an address on one channel (UUIDv7)."""
EntryId = NewType("EntryId", str)
"""A participation entry (UUIDv7); receivers de-duplicate on it."""


def uuid7() -> str:
    """A UUID version 7 (RFC 9562): 48-bit millisecond time, then random bits, sortable."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    # str(uuid.UUID(int=value)) without building the object (three of these per message).
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
