"""Per-case data keys: created, unwrapped once and cached, encrypted fields read and written.

The master keys live outside the database (environment or key file). Each case has a data key
wrapped by the current master key in ``case_key``; unwrapped keys are cached in memory only.

Crypto-shredding and several processes: shredding (:mod:`bot.caselog.retention_shred`) NULLs
the wrapped key, sets ``destroyed_at`` and NULLs every ciphertext of the case in one transaction,
then drops the key from its own process's cache. Another process may still hold the key in its
cache, so a cache hit is trusted only after one look at ``case_key.destroyed_at`` per database
session (a primary-key read, memoised in ``session.info``, so a page of 200 messages costs one
query, not 200). A destroyed key found that way is dropped from the cache and ``KeyDestroyed``
raised. The check and the NULLed ciphertexts come from the same committed state, so no process
decrypts anything of the case in a transaction that starts after the shredding commits; and a
process that looks up a key without a version (every write does) always reads the row.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import bindparam
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.crypto import (
    DataErased,
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

# session.info key: (case_id, version) pairs whose key was seen not destroyed in this session.
_CHECKED = "stemme.keys.checked"


def _stamp(path: Path | None) -> tuple[int, int] | None:
    if path is None:
        return None
    try:
        info = path.stat()
    except OSError:
        return None
    return (info.st_mtime_ns, info.st_size)


def key_file_of(settings: Settings) -> Path | None:
    """The key file the keyring comes from, or None when it comes from the environment."""
    if settings.master_key and settings.index_key:
        return None
    return settings.effective_key_file


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

    def __init__(
        self, keyring: Keyring, *, cache_size: int = 4096, key_file: Path | None = None
    ) -> None:
        self.keyring = keyring
        self._cache = KeyCache(cache_size)
        # Set when the keyring came from a file: `stemme keys rotate` adds a master key version
        # there while we run, and we pick it up (see refresh) without a restart.
        self._key_file = key_file
        self._key_file_stamp = _stamp(key_file)

    def refresh(self) -> bool:
        """Re-reads the key file if it changed since it was read; True if the keyring changed.

        Called before wrapping a new case key (so a new master version is used as soon as it
        exists, and a retired one is not) and when a wrapped key names a version we lack.
        """
        stamp = _stamp(self._key_file)
        if self._key_file is None or stamp == self._key_file_stamp:
            return False
        keyring = Keyring.load(self._key_file)
        changed = keyring != self.keyring
        self.keyring, self._key_file_stamp = keyring, stamp
        return changed

    async def create_case_key(self, session: AsyncSession, case_id: str) -> DataKey:
        """A new data key (version 1) for a new case, stored wrapped in the session.

        Raises:
            UnknownKeyVersion: Another process already wraps with a newer master version than
                this process holds (its key file copy is stale: restart it). Wrapping with the
                older one could outlive that version's retirement.
        """
        self.refresh()
        newest = (await session.exec(select(func.max(CaseKey.master_version)))).one()
        if newest is not None and newest > self.keyring.current_version:
            raise UnknownKeyVersion(newest, "master")
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
                await self._check_not_destroyed(session, case_id, version)
                return cached
        query = select(CaseKey).where(CaseKey.case_id == case_id)
        if version is not None:
            query = query.where(CaseKey.version == version)
        row = (await session.exec(query.order_by(col(CaseKey.version).desc()).limit(1))).first()
        if row is None:
            raise UnknownKeyVersion(version or 0, "data")
        if row.wrapped is None or row.destroyed_at is not None:
            self._cache.forget(case_id)
            raise KeyDestroyed(case_id)
        session.info.setdefault(_CHECKED, set()).add((case_id, row.version))
        cached = self._cache.get(case_id, row.version)
        if cached is not None:
            return cached
        try:
            raw = unwrap_data_key(
                self.keyring, row.wrapped, case_id=case_id, data_key_version=row.version
            )
        except UnknownKeyVersion:
            # Wrapped by a master version added (`stemme keys rotate`) since we read the file.
            if not self.refresh():
                raise
            raw = unwrap_data_key(
                self.keyring, row.wrapped, case_id=case_id, data_key_version=row.version
            )
        key = DataKey(case_id=case_id, version=row.version, key=raw)
        self._cache.put(key)
        return key

    async def _check_not_destroyed(
        self, session: AsyncSession, case_id: str, version: int
    ) -> None:
        checked: set[tuple[str, int]] = session.info.setdefault(_CHECKED, set())
        if (case_id, version) in checked:
            return
        query = select(CaseKey.destroyed_at, CaseKey.wrapped).where(
            CaseKey.case_id == case_id, CaseKey.version == version
        )
        row = (await session.exec(query)).first()
        if row is None or row[0] is not None or row[1] is None:
            # Shredded by another process since we cached it.
            self._cache.forget(case_id)
            raise KeyDestroyed(case_id)
        checked.add((case_id, version))

    async def preload(self, session: AsyncSession, case_ids: Sequence[str]) -> dict[str, DataKey]:
        """Check (and unwrap into the cache) the newest keys of many cases in one query.

        For lists such as the inbox queue and for a batch of inbound messages: afterwards each
        case's fields decrypt without a query of their own in this session. Returns the keys
        found; destroyed keys (and keys under a master version this process lacks) are left
        out, and decrypting their fields raises as usual.
        """
        found: dict[str, DataKey] = {}
        if not case_ids:
            return found
        rows = (await session.execute(_NEWEST_KEYS, {"p_cases": list(set(case_ids))})).all()
        checked: set[tuple[str, int]] = session.info.setdefault(_CHECKED, set())
        seen: set[str] = set()
        for case_id, version, wrapped, destroyed_at in rows:
            if case_id in seen:
                continue  # an older version
            seen.add(case_id)
            if wrapped is None or destroyed_at is not None:
                self._cache.forget(case_id)
                continue
            checked.add((case_id, version))
            key = self._cache.get(case_id, version)
            if key is None:
                try:
                    raw = unwrap_data_key(
                        self.keyring, wrapped, case_id=case_id, data_key_version=version
                    )
                except UnknownKeyVersion:
                    continue  # a newer master key: case_key() refreshes the keyring for it
                key = DataKey(case_id=case_id, version=version, key=raw)
                self._cache.put(key)
            found[case_id] = key
        return found

    def forget(self, case_id: str) -> None:
        """Drop the case's cached keys (after destroying them)."""
        self._cache.forget(case_id)

    async def decrypt_text(
        self,
        session: AsyncSession,
        case_id: str,
        blob: bytes | None,
        *,
        table: str,
        row_id: str,
        field: str,
    ) -> str:
        """Decrypt one field, picking the data key version recorded in the ciphertext.

        Raises:
            DataErased: The field was erased (``None``): removed after filing, or shredded.
            KeyDestroyed: The case's data key was destroyed.
        """
        if blob is None:
            raise DataErased(f"{table}.{field} was erased")
        key = await self.case_key(session, case_id, data_key_version_of(blob))
        return key.decrypt_text(blob, table=table, row_id=row_id, field=field)

    def system_key(self, *, version: int | None = None) -> DataKey:
        """The service's own data key, for the little that belongs to no case yet.

        Only the address of someone who wrote without being enrolled (to send them the
        enrolment prompt) is encrypted with it, and that row is deleted once sent. Derived from
        the current master key (or master ``version``, to read a blob written before a
        rotation), so it rotates with it.
        """
        version = self.keyring.current_version if version is None else version
        if version not in self.keyring.master_keys:
            self.refresh()
        master = self.keyring.master_keys.get(version)
        if master is None:
            raise UnknownKeyVersion(version, "master")
        raw = hmac.new(master, b"stemme/system-data-key/v1", hashlib.sha256).digest()
        return DataKey(case_id="system", version=version, key=raw)

    def address_index(self, channel: str, address: str) -> str:
        return blind_index(self.keyring, channel=channel, address=address)


# Built once: preload runs for every batch of inbound messages.
_NEWEST_KEYS = (
    select(CaseKey.case_id, CaseKey.version, CaseKey.wrapped, CaseKey.destroyed_at)
    .where(col(CaseKey.case_id).in_(bindparam("p_cases", expanding=True)))
    .order_by(col(CaseKey.case_id), col(CaseKey.version).desc())
)
