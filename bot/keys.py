"""Per-case data keys: created, unwrapped once and cached, encrypted fields read and written.

The master keys live outside the database (environment or key file). Each case has a data key
wrapped by the current master key in ``case_key``; unwrapped keys are cached in memory only.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.crypto import (
    DataKey,
    KeyCache,
    KeyDestroyed,
    Keyring,
    UnknownKeyVersion,
    blind_index,
    data_key_version_of,
    new_data_key,
    unwrap_data_key,
    wrap_data_key,
)
from bot.settings import ConfigError, Settings
from bot.storage.models import CaseKey


def load_keyring(settings: Settings, *, create: bool = False) -> Keyring:
    """The keyring from ``STEMME_MASTER_KEY``/``STEMME_INDEX_KEY`` or the key file.

    In demo mode (``create=True``) a missing key file is generated, readable by its owner only.
    """
    if settings.master_key and settings.index_key:
        return Keyring.parse_env(settings.master_key, settings.index_key)
    path: Path = settings.effective_key_file
    if path.exists():
        return Keyring.load(path)
    if create and not settings.production:
        keyring = Keyring.generate()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        keyring.save(path)
        return keyring
    raise ConfigError(
        f"No keyring: {path} does not exist. Run `stemme init`, or set STEMME_MASTER_KEY and "
        "STEMME_INDEX_KEY."
    )


class KeyService:
    """Creates and opens case data keys; holds the only in-memory copies."""

    def __init__(self, keyring: Keyring, *, cache_size: int = 4096) -> None:
        self.keyring = keyring
        self._cache = KeyCache(cache_size)

    async def create_case_key(self, session: AsyncSession, case_id: str) -> DataKey:
        """A new data key (version 1) for a new case, stored wrapped in the session."""
        key = DataKey(case_id=case_id, version=1, key=new_data_key())
        wrapped = wrap_data_key(self.keyring, case_id=case_id, data_key_version=1, key=key.key)
        session.add(
            CaseKey(
                case_id=case_id,
                version=1,
                wrapped=wrapped,
                master_version=self.keyring.current_version,
            )
        )
        self._cache.put(key)
        return key

    async def case_key(
        self, session: AsyncSession, case_id: str, version: int | None = None
    ) -> DataKey:
        """The case's data key (newest version unless ``version`` is given)."""
        if version is not None:
            cached = self._cache.get(case_id, version)
            if cached is not None:
                return cached
        query = select(CaseKey).where(CaseKey.case_id == case_id)
        if version is not None:
            query = query.where(CaseKey.version == version)
        row = (await session.exec(query.order_by(col(CaseKey.version).desc()).limit(1))).first()
        if row is None:
            raise UnknownKeyVersion(version or 0, "data")
        if row.wrapped is None or row.destroyed_at is not None:
            raise KeyDestroyed(case_id)
        cached = self._cache.get(case_id, row.version)
        if cached is not None:
            return cached
        raw = unwrap_data_key(
            self.keyring, row.wrapped, case_id=case_id, data_key_version=row.version
        )
        key = DataKey(case_id=case_id, version=row.version, key=raw)
        self._cache.put(key)
        return key

    async def decrypt_text(
        self,
        session: AsyncSession,
        case_id: str,
        blob: bytes,
        *,
        table: str,
        row_id: str,
        field: str,
    ) -> str:
        """Decrypt one field, picking the data key version recorded in the ciphertext."""
        key = await self.case_key(session, case_id, data_key_version_of(blob))
        return key.decrypt_text(blob, table=table, row_id=row_id, field=field)

    def system_key(self) -> DataKey:
        """The service's own data key, for the little that belongs to no case yet.

        Only the address of someone who wrote without being enrolled (to send them the
        enrolment prompt) is encrypted with it, and that row is deleted once sent. Derived from
        the current master key, so it rotates with it.
        """
        master = self.keyring.master_keys[self.keyring.current_version]
        raw = hmac.new(master, b"stemme/system-data-key/v1", hashlib.sha256).digest()
        return DataKey(case_id="system", version=self.keyring.current_version, key=raw)

    def address_index(self, channel: str, address: str) -> str:
        return blind_index(self.keyring, channel=channel, address=address)
