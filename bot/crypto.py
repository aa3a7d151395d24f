"""Envelope encryption and blind indexes for Stemme.

Each case has its own AES-256-GCM data key, stored wrapped by a versioned master key. Every
ciphertext's associated data binds it to its case, table, row, field and key version, so a blob
copied elsewhere fails to decrypt rather than revealing another child's message. Addresses and
bearer tokens are looked up through HMAC blind indexes and never stored in the clear.

Blob layouts (all integers big-endian)::

    field ciphertext:  0x01 | data-key version (4) | nonce (12) | ciphertext + tag (16)
    wrapped data key:  0x01 | master version (4)   | nonce (12) | ciphertext + tag (16)

Errors::

    CryptoError                  base class; messages never contain plaintext or key bytes
    ├── DecryptionError          tampered, truncated, malformed, moved or wrong key
    ├── UnknownKeyVersion        blob names a key version we do not hold (.version, .kind)
    ├── KeyDestroyed             the case's data key was destroyed (.case_id); raised by key stores
    └── DataErased               the ciphertext itself is gone (NULL): removed after filing

Invalid arguments and malformed key configuration raise ``ValueError`` instead.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import struct
import tempfile
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal, TypeGuard

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
_FORMAT = 0x01
_HEADER = struct.Struct(">BI")
_NONCE_BYTES = 12
_TAG_BYTES = 16
_MIN_BLOB = _HEADER.size + _NONCE_BYTES + _TAG_BYTES
_MAX_VERSION = 0xFFFFFFFF
_KEYRING_FORMAT = "stemme-keyring/1"
_B64_RE = re.compile(r"[A-Za-z0-9_-]+={0,2}")
_VERSION_RE = re.compile(r"[0-9]{1,10}")


class CryptoError(Exception):
    """Base class for all cryptographic failures in Stemme."""


class DecryptionError(CryptoError):
    """A blob failed authentication: tampered, truncated, moved, or the wrong key."""


class UnknownKeyVersion(CryptoError):
    """A blob names a key version that is not available.

    Attributes:
        version: The version in the blob header.
        kind: ``"master"`` (wrapped data key) or ``"data"`` (field ciphertext).
    """

    def __init__(self, version: int, kind: Literal["master", "data"]) -> None:
        super().__init__(f"unknown {kind} key version {version}")
        self.version = version
        self.kind = kind

    def __reduce__(self) -> tuple[type[UnknownKeyVersion], tuple[int, str]]:
        return (type(self), (self.version, self.kind))


class KeyDestroyed(CryptoError):
    """The case's data key was destroyed, so its data is unrecoverable (``.case_id``)."""

    def __init__(self, case_id: str) -> None:
        super().__init__(f"data key for case {case_id} has been destroyed")
        self.case_id = case_id

    def __reduce__(self) -> tuple[type[KeyDestroyed], tuple[str]]:
        return (type(self), (self.case_id,))


class DataErased(CryptoError):
    """The stored value was erased (retention after filing, or crypto-shredding): it is NULL."""


def _encode(*parts: str | int) -> bytes:
    # Length-prefixing every part makes the encoding injective: ("a|b", "c") != ("a", "b|c").
    out = bytearray()
    for part in parts:
        raw = str(part).encode("ascii") if isinstance(part, int) else part.encode("utf-8")
        out += len(raw).to_bytes(4, "big") + raw
    return bytes(out)


def _valid_version(version: object) -> TypeGuard[int]:
    return type(version) is int and 1 <= version <= _MAX_VERSION


def _b64(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode("ascii")


def _decode_key(text: object) -> bytes | None:
    # Returns None rather than raising so callers can raise their own message outside any
    # except block: chained exceptions could otherwise carry the secret text into tracebacks.
    if not isinstance(text, str) or not _B64_RE.fullmatch(text):
        return None
    try:
        key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:  # binascii.Error
        return None
    return key if len(key) == KEY_BYTES else None


def _check_key(key: object, what: str) -> None:
    if not isinstance(key, bytes) or len(key) != KEY_BYTES:
        raise ValueError(f"{what} must be {KEY_BYTES} bytes")


def _check_version(version: object, what: str) -> None:
    if not _valid_version(version):
        raise ValueError(f"{what} must be an integer in 1..2**32-1")


def _parse_version(text: str) -> int | None:
    if not _VERSION_RE.fullmatch(text):
        return None
    version = int(text)
    return version if _valid_version(version) else None


def _read_header(blob: bytes, what: str) -> int:
    if len(blob) < _MIN_BLOB:
        raise DecryptionError(f"{what} is truncated")
    fmt, version = _HEADER.unpack_from(blob)
    if fmt != _FORMAT:
        raise DecryptionError(f"{what} has an unknown format")
    return int(version)


def _seal(key: bytes, version: int, plaintext: bytes, aad: bytes) -> bytes:
    # Random 96-bit nonces are safe here: each key encrypts far fewer than 2**32 messages.
    nonce = os.urandom(_NONCE_BYTES)
    return _HEADER.pack(_FORMAT, version) + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def _open(key: bytes, blob: bytes, aad: bytes, what: str) -> bytes:
    nonce = blob[_HEADER.size : _HEADER.size + _NONCE_BYTES]
    try:
        return AESGCM(key).decrypt(nonce, blob[_HEADER.size + _NONCE_BYTES :], aad)
    except InvalidTag:
        raise DecryptionError(f"{what} failed authentication") from None


@dataclass(frozen=True, slots=True)
class Keyring:
    """Versioned 32-byte master keys (``current_version`` wraps new keys) and the index key."""

    master_keys: Mapping[int, bytes] = field(repr=False)
    current_version: int
    index_key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not self.master_keys:
            raise ValueError("keyring needs at least one master key")
        for version, key in self.master_keys.items():
            _check_version(version, "master key version")
            _check_key(key, f"master key version {version}")
        _check_version(self.current_version, "current_version")
        if self.current_version not in self.master_keys:
            raise ValueError(f"current master key version {self.current_version} is missing")
        _check_key(self.index_key, "index key")
        # Copy so a caller mutating their dict cannot swap keys under a "frozen" keyring.
        object.__setattr__(self, "master_keys", MappingProxyType(dict(self.master_keys)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Keyring):
            return NotImplemented
        # to_json() is canonical (sorted versions), so this compares everything in constant time.
        return hmac.compare_digest(self.to_json().encode(), other.to_json().encode())

    @classmethod
    def generate(cls) -> Keyring:
        """Creates a keyring with a random version-1 master key and a random index key."""
        return cls({1: secrets.token_bytes(KEY_BYTES)}, 1, secrets.token_bytes(KEY_BYTES))

    def with_new_version(self) -> Keyring:
        """Returns a copy with a new random master key (version max+1) made current."""
        version = max(self.master_keys) + 1
        keys = {**self.master_keys, version: secrets.token_bytes(KEY_BYTES)}
        return Keyring(keys, version, self.index_key)

    def to_json(self) -> str:
        """Serialises the keyring, including all key material, as ``stemme-keyring/1`` JSON."""
        return json.dumps(
            {
                "format": _KEYRING_FORMAT,
                "current": self.current_version,
                "master_keys": {str(v): _b64(k) for v, k in sorted(self.master_keys.items())},
                "index_key": _b64(self.index_key),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Keyring:
        """Parses ``stemme-keyring/1`` JSON.

        Raises:
            ValueError: The text is not a valid keyring; the message never echoes key material.
        """
        try:
            raw = json.loads(text)
        except ValueError:
            raw = None  # Raised below, outside the handler: JSONDecodeError.doc holds the keys.
        if not isinstance(raw, dict) or raw.get("format") != _KEYRING_FORMAT:
            raise ValueError(f"keyring is not valid {_KEYRING_FORMAT} JSON")
        current, entries = raw.get("current"), raw.get("master_keys")
        if not _valid_version(current) or not isinstance(entries, dict):
            raise ValueError("keyring JSON needs an integer 'current' and a 'master_keys' object")
        master: dict[int, bytes] = {}
        for version_text, key_text in entries.items():
            version, key = _parse_version(version_text), _decode_key(key_text)
            if version is None or key is None:
                raise ValueError("keyring JSON has a malformed master key entry")
            master[version] = key
        index_key = _decode_key(raw.get("index_key"))
        if index_key is None:
            raise ValueError("keyring JSON has a malformed index_key")
        return cls(master, current, index_key)

    @classmethod
    def load(cls, path: Path) -> Keyring:
        """Reads a keyring file written by `save`."""
        return cls.from_json(path.read_text(encoding="utf-8"))

    def save(self, path: Path) -> None:
        """Writes the keyring atomically with mode 0o600, fsyncing file and directory."""
        directory = path.parent
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                os.fchmod(handle.fileno(), 0o600)  # mkstemp already does; don't rely on it.
                handle.write(self.to_json())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_name, path)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        # Persist the rename itself, or a crash could leave the old keyring in place.
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    @classmethod
    def parse_env(cls, master: str, index: str) -> Keyring:
        """Builds a keyring from environment variable values.

        Args:
            master: STEMME_MASTER_KEY, comma-separated ``<version>:<urlsafe-b64 of 32 bytes>``
                entries; the highest version becomes current.
            index: STEMME_INDEX_KEY, urlsafe base64 of 32 bytes.

        Raises:
            ValueError: Names the malformed variable without echoing its value.
        """
        keys: dict[int, bytes] = {}
        for entry in master.split(","):
            version_text, _, key_text = entry.strip().partition(":")
            version, key = _parse_version(version_text.strip()), _decode_key(key_text.strip())
            if version is None or key is None or version in keys:
                raise ValueError(
                    "STEMME_MASTER_KEY is malformed: expected comma-separated, unique "
                    "'<version>:<urlsafe base64 of 32 bytes>' entries with versions >= 1"
                )
            keys[version] = key
        index_key = _decode_key(index.strip())
        if index_key is None:
            raise ValueError("STEMME_INDEX_KEY is malformed: expected urlsafe base64 of 32 bytes")
        return cls(keys, max(keys), index_key)


def new_data_key() -> bytes:
    """Returns a fresh random 32-byte data key."""
    return secrets.token_bytes(KEY_BYTES)


def _wrap_aad(case_id: str, data_key_version: int, master_version: int) -> bytes:
    return _encode("stemme/datakey/v1", case_id, data_key_version, master_version)


def wrap_data_key(keyring: Keyring, *, case_id: str, data_key_version: int, key: bytes) -> bytes:
    """Encrypts a case's data key under the current master key."""
    _check_key(key, "data key")
    _check_version(data_key_version, "data key version")
    version = keyring.current_version
    aad = _wrap_aad(case_id, data_key_version, version)
    return _seal(keyring.master_keys[version], version, key, aad)


def master_version_of(blob: bytes) -> int:
    """Returns the master key version a wrapped data key was wrapped with."""
    return _read_header(blob, "wrapped data key")


def unwrap_data_key(
    keyring: Keyring, blob: bytes, *, case_id: str, data_key_version: int
) -> bytes:
    """Decrypts a wrapped data key.

    Raises:
        UnknownKeyVersion: The master version (``kind="master"``) is not in the keyring.
        DecryptionError: Tampered, truncated, or wrapped for another case or key version.
    """
    version = master_version_of(blob)
    master = keyring.master_keys.get(version)
    if master is None:
        raise UnknownKeyVersion(version, "master")
    key = _open(master, blob, _wrap_aad(case_id, data_key_version, version), "wrapped data key")
    if len(key) != KEY_BYTES:
        raise DecryptionError("wrapped data key has the wrong length")
    return key


def rewrap_data_key(
    keyring: Keyring, blob: bytes, *, case_id: str, data_key_version: int
) -> bytes:
    """Re-wraps a data key under the current master key, for master key rotation."""
    key = unwrap_data_key(keyring, blob, case_id=case_id, data_key_version=data_key_version)
    return wrap_data_key(keyring, case_id=case_id, data_key_version=data_key_version, key=key)


def data_key_version_of(blob: bytes) -> int:
    """Returns the data key version a field ciphertext was encrypted with."""
    return _read_header(blob, "field ciphertext")


@dataclass(frozen=True, slots=True)
class DataKey:
    """An unwrapped per-case data key; its ``repr`` never shows the key."""

    case_id: str
    version: int
    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.case_id, str) or not self.case_id:
            raise ValueError("data key needs a non-empty case_id")
        _check_key(self.key, "data key")
        _check_version(self.version, "data key version")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DataKey):
            return NotImplemented
        same = hmac.compare_digest(self.key, other.key)
        return same and (self.case_id, self.version) == (other.case_id, other.version)

    def _aad(self, table: str, row_id: str, field: str) -> bytes:
        return _encode("stemme/field/v1", self.case_id, table, row_id, field, self.version)

    def encrypt(self, plaintext: bytes | str, *, table: str, row_id: str, field: str) -> bytes:
        """Encrypts a value bound to its case, table, row and field; str is UTF-8 encoded."""
        data = plaintext.encode("utf-8") if isinstance(plaintext, str) else plaintext
        return _seal(self.key, self.version, data, self._aad(table, row_id, field))

    def decrypt(self, blob: bytes, *, table: str, row_id: str, field: str) -> bytes:
        """Decrypts a value encrypted by `encrypt` for the same location.

        Raises:
            UnknownKeyVersion: The blob names another data key version (``kind="data"``).
            DecryptionError: Tampered, truncated, malformed, or moved to another location.
        """
        version = data_key_version_of(blob)
        if version != self.version:
            raise UnknownKeyVersion(version, "data")
        return _open(self.key, blob, self._aad(table, row_id, field), "field ciphertext")

    def decrypt_text(self, blob: bytes, *, table: str, row_id: str, field: str) -> str:
        """Like `decrypt`, decoding UTF-8; invalid UTF-8 raises DecryptionError."""
        data = self.decrypt(blob, table=table, row_id=row_id, field=field)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass  # Raised below, outside the handler: the UnicodeDecodeError holds plaintext.
        raise DecryptionError("field plaintext is not valid UTF-8")


class KeyCache:
    """LRU cache of unwrapped data keys keyed by ``(case_id, version)``.

    Safe within one asyncio event loop (no method awaits); not for use across threads.
    """

    def __init__(self, maxsize: int = 1024) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize = maxsize
        self._keys: OrderedDict[tuple[str, int], DataKey] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, case_id: str, version: int) -> DataKey | None:
        """Returns the cached key and marks it most recently used, or None."""
        key = self._keys.get((case_id, version))
        if key is not None:
            self._keys.move_to_end((case_id, version))
        return key

    def put(self, key: DataKey) -> None:
        """Caches a key, evicting the least recently used one when full."""
        self._keys[(key.case_id, key.version)] = key
        self._keys.move_to_end((key.case_id, key.version))
        while len(self._keys) > self.maxsize:
            self._keys.popitem(last=False)

    def forget(self, case_id: str) -> None:
        """Drops every cached version of a case's key, e.g. once the key is destroyed."""
        for cached in [k for k in self._keys if k[0] == case_id]:
            del self._keys[cached]

    def clear(self) -> None:
        """Drops all cached keys."""
        self._keys.clear()


def blind_index(keyring: Keyring, *, channel: str, address: str) -> str:
    """Returns a deterministic keyed digest (64 lowercase hex chars) for equality lookups.

    The caller must normalise ``address`` first (e.g. E.164 phone numbers, lower-cased e-mail);
    differently written forms of one address give unrelated indexes.
    """
    message = _encode("stemme/blind-index/v1", channel, address)
    return hmac.new(keyring.index_key, message, hashlib.sha256).hexdigest()


def token_digest(keyring: Keyring, token: str) -> str:
    """Returns the blind index of a bearer token (channel ``"token"``), to store instead of it."""
    return blind_index(keyring, channel="token", address=token)


def constant_time_equals(a: str | bytes, b: str | bytes) -> bool:
    """Compares secrets in constant time; str values are UTF-8 encoded first."""
    a_bytes = a.encode("utf-8") if isinstance(a, str) else a
    b_bytes = b.encode("utf-8") if isinstance(b, str) else b
    return hmac.compare_digest(a_bytes, b_bytes)


def random_token(nbytes: int = 24) -> str:
    """Returns a URL-safe random token; at least 16 bytes (128 bits) of entropy are enforced."""
    if nbytes < 16:
        raise ValueError("tokens need at least 16 random bytes")
    return secrets.token_urlsafe(nbytes)
