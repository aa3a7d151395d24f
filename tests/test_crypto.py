"""Tests for bot.crypto: envelope encryption, key handling and blind indexes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import pickle
import re
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import assume, example, given
from hypothesis import strategies as st

from bot.crypto import (
    CryptoError,
    DataKey,
    DecryptionError,
    KeyCache,
    KeyDestroyed,
    Keyring,
    UnknownKeyVersion,
    blind_index,
    constant_time_equals,
    data_key_version_of,
    master_version_of,
    new_data_key,
    random_token,
    rewrap_data_key,
    token_digest,
    unwrap_data_key,
    wrap_data_key,
)

# Module-level (not fixtures) so hypothesis tests can share them.
KEYRING = Keyring.generate()
CASE = "0190f1a2-7c3d-7e4f-8a5b-6c7d8e9f0a1b"
OTHER_CASE = "0190f1a2-7c3d-7e4f-8a5b-000000000000"
DATA_KEY = DataKey(CASE, 1, new_data_key())
LOC = {"table": "message", "row_id": "0190f1a3-0000-7000-8000-000000000001", "field": "body"}
SECRET_TEXT = "Jeg hedder Åse og jeg er bange 😢"
HEADER = 1 + 4 + 12
TAG = 16
FIXED_KEY = bytes(range(32))
FIXED_INDEX_KEY = bytes(range(32, 64))
STD_B64 = base64.b64encode(b"\xfb" * 32).decode()  # standard alphabet ("+/"), not urlsafe


def lp(*parts: str | int) -> bytes:
    """Independent re-statement of the documented length-prefixed AAD encoding."""
    out = b""
    for part in parts:
        raw = str(part).encode()
        out += len(raw).to_bytes(4, "big") + raw
    return out


def b64(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode()


def flip(blob: bytes, pos: int, bit: int) -> bytes:
    tampered = bytearray(blob)
    tampered[pos] ^= 1 << bit
    return bytes(tampered)


def key_forms(key: bytes) -> list[str]:
    """Every textual form in which key bytes could leak into a repr."""
    return [
        key.hex(),
        repr(key),
        repr(key)[2:-1],
        key.decode("latin-1"),
        base64.b64encode(key).decode(),
        b64(key),
        b64(key).rstrip("="),
    ]


# --- field encryption: round trips and layout ---


@given(st.text())
@example("")
@example("æøå ÆØÅ – hej 👧🏽🏳️‍🌈")
def test_text_round_trip(text: str) -> None:
    blob = DATA_KEY.encrypt(text, **LOC)
    assert DATA_KEY.decrypt_text(blob, **LOC) == text
    assert DATA_KEY.decrypt(blob, **LOC) == text.encode("utf-8")


@given(st.binary(), st.text(max_size=20), st.text(max_size=40), st.text(max_size=20))
def test_bytes_round_trip_any_location(data: bytes, table: str, row_id: str, field: str) -> None:
    blob = DATA_KEY.encrypt(data, table=table, row_id=row_id, field=field)
    assert len(blob) == HEADER + len(data) + TAG
    assert DATA_KEY.decrypt(blob, table=table, row_id=row_id, field=field) == data


@given(
    st.tuples(st.text(max_size=8), st.text(max_size=8), st.text(max_size=8)),
    st.tuples(st.text(max_size=8), st.text(max_size=8), st.text(max_size=8)),
)
def test_any_other_location_fails(a: tuple[str, str, str], b: tuple[str, str, str]) -> None:
    assume(a != b)
    blob = DATA_KEY.encrypt(b"x", table=a[0], row_id=a[1], field=a[2])
    with pytest.raises(DecryptionError):
        DATA_KEY.decrypt(blob, table=b[0], row_id=b[1], field=b[2])


def test_blob_layout() -> None:
    key = DataKey(CASE, 7, new_data_key())
    blob = key.encrypt("hej", **LOC)
    assert blob[0] == 0x01
    assert blob[1:5] == (7).to_bytes(4, "big")
    assert len(blob) == HEADER + 3 + TAG
    assert data_key_version_of(blob) == 7


def test_same_plaintext_encrypts_to_different_blobs() -> None:
    blobs = [DATA_KEY.encrypt(SECRET_TEXT, **LOC) for _ in range(200)]
    assert len(set(blobs)) == 200
    assert len({blob[5:HEADER] for blob in blobs}) == 200  # nonces never repeat
    assert all(DATA_KEY.decrypt_text(blob, **LOC) == SECRET_TEXT for blob in blobs)


def test_known_answer_field_format_is_stable() -> None:
    # Built by hand from the documented format, so a silent AAD change breaks stored data here.
    # A blob as stored by an earlier release (version 3, zero nonce).
    key = DataKey(CASE, 3, FIXED_KEY)
    aad = lp("stemme/field/v1", CASE, "message", "row-1", "body", 3)
    blob = bytes.fromhex(
        "010000000300000000000000000000000066d9df92357d062fbe513ae9458c3684c0d8c1"
    )
    assert AESGCM(FIXED_KEY).decrypt(blob[5:HEADER], blob[HEADER:], aad) == b"hej"
    assert key.decrypt_text(blob, table="message", row_id="row-1", field="body") == "hej"
    ours = key.encrypt("hej", table="message", row_id="row-1", field="body")
    assert AESGCM(FIXED_KEY).decrypt(ours[5:HEADER], ours[HEADER:], aad) == b"hej"


# --- field encryption: tampering ---


def test_every_flipped_bit_fails_loudly() -> None:
    blob = DATA_KEY.encrypt(SECRET_TEXT, **LOC)
    for pos in range(len(blob)):
        for bit in range(8):
            tampered = flip(blob, pos, bit)
            if 1 <= pos <= 4:
                # The version header is checked before authentication: a changed version means
                # "not this key", reported precisely so callers can tell it from tampering.
                with pytest.raises(UnknownKeyVersion) as unknown:
                    DATA_KEY.decrypt(tampered, **LOC)
                assert unknown.value.kind == "data"
                assert unknown.value.version == int.from_bytes(tampered[1:5], "big")
            else:
                with pytest.raises(DecryptionError) as exc:
                    DATA_KEY.decrypt(tampered, **LOC)
                assert SECRET_TEXT not in str(exc.value)


def test_changed_version_fails_even_with_a_key_of_that_version() -> None:
    blob = DATA_KEY.encrypt(SECRET_TEXT, **LOC)
    relabelled = blob[:1] + (2).to_bytes(4, "big") + blob[5:]
    with pytest.raises(UnknownKeyVersion) as exc:
        DATA_KEY.decrypt(relabelled, **LOC)
    assert (exc.value.version, exc.value.kind) == (2, "data")
    # Same key bytes registered as version 2: the version is authenticated, so still no plaintext.
    with pytest.raises(DecryptionError):
        DataKey(CASE, 2, DATA_KEY.key).decrypt(relabelled, **LOC)


def test_wrong_data_key_version_reports_unknown_version() -> None:
    blob = DataKey(CASE, 2, DATA_KEY.key).encrypt("x", **LOC)
    with pytest.raises(UnknownKeyVersion) as exc:
        DATA_KEY.decrypt(blob, **LOC)
    assert (exc.value.version, exc.value.kind) == (2, "data")


def test_every_truncation_fails() -> None:
    blob = DATA_KEY.encrypt(SECRET_TEXT, **LOC)
    for length in range(len(blob)):
        with pytest.raises(DecryptionError):
            DATA_KEY.decrypt(blob[:length], **LOC)
    with pytest.raises(DecryptionError):
        DATA_KEY.decrypt(blob + b"\x00", **LOC)


def test_empty_plaintext_truncations_fail() -> None:
    blob = DATA_KEY.encrypt(b"", **LOC)
    assert len(blob) == HEADER + TAG
    for length in range(len(blob)):
        with pytest.raises(DecryptionError):
            DATA_KEY.decrypt(blob[:length], **LOC)


def test_unknown_format_byte_fails() -> None:
    blob = DATA_KEY.encrypt("x", **LOC)
    with pytest.raises(DecryptionError, match="format"):
        DATA_KEY.decrypt(b"\x02" + blob[1:], **LOC)
    with pytest.raises(DecryptionError):
        data_key_version_of(b"\x02" + blob[1:])
    with pytest.raises(DecryptionError):
        data_key_version_of(blob[:HEADER])


def test_moved_to_another_case_fails() -> None:
    blob = DATA_KEY.encrypt(SECRET_TEXT, **LOC)
    with pytest.raises(DecryptionError):
        DataKey(OTHER_CASE, 1, new_data_key()).decrypt(blob, **LOC)
    with pytest.raises(DecryptionError):  # same key bytes, other case: AAD binds the case
        DataKey(OTHER_CASE, 1, DATA_KEY.key).decrypt(blob, **LOC)


@pytest.mark.parametrize(
    "moved",
    [
        {**LOC, "row_id": "0190f1a3-0000-7000-8000-000000000002"},
        {**LOC, "field": "attachment"},
        {**LOC, "table": "identity"},
        {"table": "message|0190f1a3", "row_id": "0000-7000-8000-000000000001", "field": "body"},
        {"table": "messag", "row_id": "e" + LOC["row_id"], "field": "body"},
    ],
    ids=["other-row", "other-field", "other-table", "separator-shift", "boundary-shift"],
)
def test_moved_within_case_fails(moved: dict[str, str]) -> None:
    blob = DATA_KEY.encrypt(SECRET_TEXT, **LOC)
    with pytest.raises(DecryptionError):
        DATA_KEY.decrypt(blob, **moved)


def test_decrypt_text_rejects_non_utf8_without_chaining_plaintext() -> None:
    blob = DATA_KEY.encrypt(b"\xff\xfesecret", **LOC)
    with pytest.raises(DecryptionError) as exc:
        DATA_KEY.decrypt_text(blob, **LOC)
    assert exc.value.__context__ is None
    assert exc.value.__cause__ is None
    assert "secret" not in str(exc.value)


# --- DataKey ---


def test_data_key_repr_hides_key() -> None:
    key = DataKey(CASE, 1, new_data_key())
    for text in (repr(key), str(key)):
        assert CASE in text
        for form in key_forms(key.key):
            assert form not in text
    assert repr(key) == f"DataKey(case_id='{CASE}', version=1)"


@pytest.mark.parametrize(
    ("case_id", "version", "key", "message"),
    [
        (CASE, 1, b"short", "32 bytes"),
        (CASE, 1, bytes(33), "32 bytes"),
        (CASE, 0, bytes(32), "version"),
        (CASE, 2**32, bytes(32), "version"),
        ("", 1, bytes(32), "case_id"),
    ],
)
def test_data_key_validation(case_id: str, version: int, key: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DataKey(case_id, version, key)


def test_data_key_equality() -> None:
    raw = new_data_key()
    assert DataKey(CASE, 1, raw) == DataKey(CASE, 1, bytes(raw))
    assert DataKey(CASE, 1, raw) != DataKey(CASE, 1, new_data_key())
    assert DataKey(CASE, 1, raw) != DataKey(OTHER_CASE, 1, raw)
    assert DataKey(CASE, 1, raw) != DataKey(CASE, 2, raw)


def test_new_data_key() -> None:
    keys = {new_data_key() for _ in range(100)}
    assert len(keys) == 100
    assert all(type(k) is bytes and len(k) == 32 for k in keys)


# --- wrapped data keys ---


@given(st.binary(min_size=32, max_size=32), st.uuids().map(str), st.integers(1, 2**32 - 1))
def test_wrap_round_trip(key: bytes, case_id: str, version: int) -> None:
    blob = wrap_data_key(KEYRING, case_id=case_id, data_key_version=version, key=key)
    assert len(blob) == HEADER + 32 + TAG
    assert blob[0] == 0x01
    assert master_version_of(blob) == 1
    assert unwrap_data_key(KEYRING, blob, case_id=case_id, data_key_version=version) == key


def test_wrap_is_randomised() -> None:
    key = new_data_key()
    blobs = {wrap_data_key(KEYRING, case_id=CASE, data_key_version=1, key=key) for _ in range(50)}
    assert len(blobs) == 50


def test_known_answer_wrap_format_is_stable() -> None:
    ring = Keyring({4: FIXED_KEY}, 4, FIXED_INDEX_KEY)
    nonce = bytes(range(12))
    aad = lp("stemme/datakey/v1", CASE, 2, 4)
    blob = (
        b"\x01" + (4).to_bytes(4, "big") + nonce + AESGCM(FIXED_KEY).encrypt(nonce, bytes(32), aad)
    )
    assert unwrap_data_key(ring, blob, case_id=CASE, data_key_version=2) == bytes(32)
    ours = wrap_data_key(ring, case_id=CASE, data_key_version=2, key=FIXED_INDEX_KEY)
    assert ours[:5] == b"\x01\x00\x00\x00\x04"
    assert AESGCM(FIXED_KEY).decrypt(ours[5:HEADER], ours[HEADER:], aad) == FIXED_INDEX_KEY


def test_wrapped_key_every_flipped_bit_fails() -> None:
    blob = wrap_data_key(KEYRING, case_id=CASE, data_key_version=1, key=DATA_KEY.key)
    for pos in range(len(blob)):
        for bit in range(8):
            tampered = flip(blob, pos, bit)
            if 1 <= pos <= 4:
                with pytest.raises(UnknownKeyVersion) as unknown:
                    unwrap_data_key(KEYRING, tampered, case_id=CASE, data_key_version=1)
                assert unknown.value.kind == "master"
                assert unknown.value.version == int.from_bytes(tampered[1:5], "big")
            else:
                with pytest.raises(DecryptionError):
                    unwrap_data_key(KEYRING, tampered, case_id=CASE, data_key_version=1)


def test_wrapped_key_every_truncation_fails() -> None:
    blob = wrap_data_key(KEYRING, case_id=CASE, data_key_version=1, key=DATA_KEY.key)
    for length in range(len(blob)):
        with pytest.raises(DecryptionError):
            unwrap_data_key(KEYRING, blob[:length], case_id=CASE, data_key_version=1)
    with pytest.raises(DecryptionError):
        master_version_of(blob[:10])


def test_wrapped_key_for_other_case_or_version_fails() -> None:
    blob = wrap_data_key(KEYRING, case_id=CASE, data_key_version=1, key=DATA_KEY.key)
    with pytest.raises(DecryptionError):
        unwrap_data_key(KEYRING, blob, case_id=OTHER_CASE, data_key_version=1)
    with pytest.raises(DecryptionError):
        unwrap_data_key(KEYRING, blob, case_id=CASE, data_key_version=2)


def test_wrapped_key_under_other_keyring_fails() -> None:
    blob = wrap_data_key(KEYRING, case_id=CASE, data_key_version=1, key=DATA_KEY.key)
    with pytest.raises(DecryptionError):  # same version number, different master key
        unwrap_data_key(Keyring.generate(), blob, case_id=CASE, data_key_version=1)


def test_unknown_master_version() -> None:
    newer = KEYRING.with_new_version()
    blob = wrap_data_key(newer, case_id=CASE, data_key_version=1, key=DATA_KEY.key)
    with pytest.raises(UnknownKeyVersion) as exc:
        unwrap_data_key(KEYRING, blob, case_id=CASE, data_key_version=1)
    assert (exc.value.version, exc.value.kind) == (2, "master")


@pytest.mark.parametrize(("key", "version"), [(bytes(31), 1), (bytes(32), 0), (bytes(32), -1)])
def test_wrap_validates_arguments(key: bytes, version: int) -> None:
    with pytest.raises(ValueError):
        wrap_data_key(KEYRING, case_id=CASE, data_key_version=version, key=key)


def test_rotation_with_new_version_and_rewrap() -> None:
    old = Keyring.generate()
    data_key = DataKey(CASE, 1, new_data_key())
    stored = data_key.encrypt(SECRET_TEXT, **LOC)
    blob_v1 = wrap_data_key(old, case_id=CASE, data_key_version=1, key=data_key.key)

    rotated = old.with_new_version()
    assert rotated.current_version == 2
    assert sorted(rotated.master_keys) == [1, 2]
    assert rotated.master_keys[1] == old.master_keys[1]
    assert rotated.master_keys[2] != old.master_keys[1]
    assert rotated.index_key == old.index_key
    assert old.current_version == 1 and sorted(old.master_keys) == [1]  # original untouched

    blob_v2 = rewrap_data_key(rotated, blob_v1, case_id=CASE, data_key_version=1)
    assert master_version_of(blob_v1) == 1
    assert master_version_of(blob_v2) == 2
    assert unwrap_data_key(rotated, blob_v2, case_id=CASE, data_key_version=1) == data_key.key
    assert unwrap_data_key(rotated, blob_v1, case_id=CASE, data_key_version=1) == data_key.key
    unwrapped = unwrap_data_key(rotated, blob_v2, case_id=CASE, data_key_version=1)
    assert DataKey(CASE, 1, unwrapped).decrypt_text(stored, **LOC) == SECRET_TEXT

    retired = Keyring({2: rotated.master_keys[2]}, 2, rotated.index_key)
    assert unwrap_data_key(retired, blob_v2, case_id=CASE, data_key_version=1) == data_key.key
    with pytest.raises(UnknownKeyVersion) as exc:
        unwrap_data_key(retired, blob_v1, case_id=CASE, data_key_version=1)
    assert (exc.value.version, exc.value.kind) == (1, "master")


def test_with_new_version_uses_max_plus_one() -> None:
    ring = Keyring({1: new_data_key(), 5: new_data_key()}, 1, new_data_key())
    assert ring.with_new_version().current_version == 6


# --- Keyring ---


def test_generate() -> None:
    ring = Keyring.generate()
    assert ring.current_version == 1
    assert list(ring.master_keys) == [1]
    assert len(ring.master_keys[1]) == 32 and len(ring.index_key) == 32
    assert ring.master_keys[1] != ring.index_key
    assert ring != Keyring.generate()


def test_json_round_trip_and_format() -> None:
    ring = KEYRING.with_new_version().with_new_version()
    text = ring.to_json()
    raw = json.loads(text)
    assert set(raw) == {"format", "current", "master_keys", "index_key"}
    assert raw["format"] == "stemme-keyring/1"
    assert raw["current"] == 3
    assert sorted(raw["master_keys"]) == ["1", "2", "3"]
    assert base64.urlsafe_b64decode(raw["master_keys"]["2"]) == ring.master_keys[2]
    assert base64.urlsafe_b64decode(raw["index_key"]) == ring.index_key
    parsed = Keyring.from_json(text)
    assert parsed == ring
    assert parsed.current_version == 3
    assert dict(parsed.master_keys) == dict(ring.master_keys)


def _json(**overrides: object) -> str:
    raw: dict[str, object] = {
        "format": "stemme-keyring/1",
        "current": 1,
        "master_keys": {"1": b64(FIXED_KEY)},
        "index_key": b64(FIXED_INDEX_KEY),
    }
    raw.update(overrides)
    return json.dumps(raw)


@pytest.mark.parametrize(
    "text",
    [
        "not json " + b64(FIXED_KEY),
        _json() + b64(FIXED_KEY),
        "[]",
        _json(format="stemme-keyring/2"),
        _json(current=2),
        _json(current="1"),
        _json(current=True),
        _json(master_keys={}),
        _json(master_keys={"0": b64(FIXED_KEY)}),
        _json(master_keys={"x": b64(FIXED_KEY)}),
        _json(master_keys={"1": b64(FIXED_KEY[:31])}),
        _json(master_keys={"1": STD_B64}),
        _json(master_keys=[b64(FIXED_KEY)]),
        _json(index_key=b64(FIXED_INDEX_KEY + b"x")),
        _json(index_key=None),
    ],
)
def test_from_json_rejects_malformed_without_leaking(text: str) -> None:
    with pytest.raises(ValueError) as exc:
        Keyring.from_json(text)
    assert exc.value.__context__ is None
    for form in key_forms(FIXED_KEY) + key_forms(FIXED_INDEX_KEY):
        assert form not in str(exc.value)


def test_from_json_accepts_unpadded_keys() -> None:
    text = _json(master_keys={"1": b64(FIXED_KEY).rstrip("=")})
    assert Keyring.from_json(text).master_keys[1] == FIXED_KEY


def test_save_and_load(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    old_umask = os.umask(0)  # even a permissive umask must not widen the mode
    try:
        KEYRING.save(path)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Keyring.load(path) == KEYRING
    assert os.listdir(tmp_path) == ["keyring.json"]


def test_save_replaces_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    path.write_text("old")
    path.chmod(0o644)
    rotated = KEYRING.with_new_version()
    rotated.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Keyring.load(path) == rotated
    assert os.listdir(tmp_path) == ["keyring.json"]


def test_save_failure_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "is-a-dir"
    target.mkdir()
    (target / "x").write_text("")  # os.replace of a file onto a non-empty directory fails
    with pytest.raises(OSError):
        KEYRING.save(target)
    assert sorted(os.listdir(tmp_path)) == ["is-a-dir"]


@pytest.mark.parametrize(
    ("master_keys", "current", "index_key", "message"),
    [
        ({}, 1, FIXED_INDEX_KEY, "at least one master key"),
        ({0: FIXED_KEY}, 0, FIXED_INDEX_KEY, "master key version"),
        ({-1: FIXED_KEY}, -1, FIXED_INDEX_KEY, "master key version"),
        ({1: FIXED_KEY[:16]}, 1, FIXED_INDEX_KEY, "master key version 1 must be 32 bytes"),
        ({1: b64(FIXED_KEY)}, 1, FIXED_INDEX_KEY, "master key version 1 must be 32 bytes"),
        ({1: FIXED_KEY}, 2, FIXED_INDEX_KEY, "current master key version 2 is missing"),
        ({1: FIXED_KEY}, True, FIXED_INDEX_KEY, "current_version"),
        ({1: FIXED_KEY}, 1, FIXED_INDEX_KEY[:31], "index key must be 32 bytes"),
    ],
)
def test_keyring_validation(
    master_keys: dict[int, bytes], current: int, index_key: bytes, message: str
) -> None:
    with pytest.raises(ValueError, match=message) as exc:
        Keyring(master_keys, current, index_key)
    for form in key_forms(FIXED_KEY) + key_forms(FIXED_INDEX_KEY):
        assert form not in str(exc.value)


def test_keyring_master_keys_are_read_only_copies() -> None:
    source = {1: FIXED_KEY}
    ring = Keyring(source, 1, FIXED_INDEX_KEY)
    source[1] = FIXED_INDEX_KEY
    assert ring.master_keys[1] == FIXED_KEY
    with pytest.raises(TypeError):
        ring.master_keys[2] = FIXED_KEY  # type: ignore[index]


def test_keyring_repr_hides_keys() -> None:
    ring = KEYRING.with_new_version()
    for text in (repr(ring), str(ring)):
        for key in [*ring.master_keys.values(), ring.index_key]:
            for form in key_forms(key):
                assert form not in text
    assert repr(ring) == "Keyring(current_version=2)"


# --- parse_env ---

GOOD_1 = b64(FIXED_KEY)
GOOD_2 = b64(FIXED_INDEX_KEY)
GOOD_INDEX = b64(bytes(range(64, 96)))


def test_parse_env() -> None:
    ring = Keyring.parse_env(f"2:{GOOD_2}, 1:{GOOD_1.rstrip('=')}", f" {GOOD_INDEX}\n")
    assert ring.current_version == 2
    assert dict(ring.master_keys) == {1: FIXED_KEY, 2: FIXED_INDEX_KEY}
    assert ring.index_key == bytes(range(64, 96))
    assert Keyring.parse_env(f"1:{GOOD_1}", GOOD_INDEX).current_version == 1


@pytest.mark.parametrize(
    "master",
    [
        "",
        "garbage-master-value-Q7",
        GOOD_1,
        f"1:{b64(FIXED_KEY[:31])}",
        f"1:{b64(FIXED_KEY + b'!')}",
        f"v1:{GOOD_1}",
        f"0:{GOOD_1}",
        f"-1:{GOOD_1}",
        f"4294967296:{GOOD_1}",
        f"1:{GOOD_1},1:{GOOD_2}",
        f"1:{GOOD_1},",
        f"1:{STD_B64}",
        f"1:{GOOD_1}:extra",
    ],
)
def test_parse_env_bad_master_names_variable_only(master: str) -> None:
    with pytest.raises(ValueError) as exc:
        Keyring.parse_env(master, GOOD_INDEX)
    message = str(exc.value)
    assert "STEMME_MASTER_KEY" in message
    assert "STEMME_INDEX_KEY" not in message
    assert exc.value.__context__ is None
    for piece in [master, *master.replace(",", ":").split(":")]:
        if len(piece) >= 8:
            assert piece not in message


@pytest.mark.parametrize(
    "index",
    [
        "",
        "garbage-index-value-Q7",
        GOOD_INDEX + "!",
        b64(bytes(31)),
        b64(bytes(33)),
        STD_B64,
        f"{GOOD_INDEX} {GOOD_INDEX}",
    ],
)
def test_parse_env_bad_index_names_variable_only(index: str) -> None:
    with pytest.raises(ValueError) as exc:
        Keyring.parse_env(f"1:{GOOD_1}", index)
    message = str(exc.value)
    assert "STEMME_INDEX_KEY" in message
    assert "STEMME_MASTER_KEY" not in message
    assert exc.value.__context__ is None
    assert GOOD_1 not in message
    for piece in [index, *index.split()]:
        if piece:
            assert piece not in message


# --- KeyCache ---


def _dk(case_id: str, version: int = 1) -> DataKey:
    return DataKey(case_id, version, new_data_key())


def test_key_cache_lru_eviction() -> None:
    cache = KeyCache(maxsize=2)
    a, b, c = _dk("a"), _dk("b"), _dk("c")
    cache.put(a)
    cache.put(b)
    assert cache.get("a", 1) is a  # a is now most recently used
    cache.put(c)
    assert len(cache) == 2
    assert cache.get("b", 1) is None
    assert cache.get("a", 1) is a
    assert cache.get("c", 1) is c
    assert cache.get("a", 2) is None


def test_key_cache_put_refreshes_and_replaces() -> None:
    cache = KeyCache(maxsize=2)
    a, b = _dk("a"), _dk("b")
    cache.put(a)
    cache.put(b)
    a2 = _dk("a")
    cache.put(a2)  # same (case, version): replaces and refreshes, no growth
    assert len(cache) == 2
    cache.put(_dk("c"))
    assert cache.get("a", 1) is a2
    assert cache.get("b", 1) is None


def test_key_cache_default_size() -> None:
    cache = KeyCache()
    assert cache.maxsize == 1024
    for i in range(1025):
        cache.put(_dk(f"case-{i}"))
    assert len(cache) == 1024
    assert cache.get("case-0", 1) is None
    assert cache.get("case-1", 1) is not None


def test_key_cache_forget_and_clear() -> None:
    cache = KeyCache()
    a1, a2, b1 = _dk("a", 1), _dk("a", 2), _dk("b", 1)
    for key in (a1, a2, b1):
        cache.put(key)
    cache.forget("a")
    assert cache.get("a", 1) is None and cache.get("a", 2) is None
    assert cache.get("b", 1) is b1
    assert len(cache) == 1
    cache.forget("missing")
    assert len(cache) == 1
    cache.clear()
    assert len(cache) == 0
    assert cache.get("b", 1) is None


def test_key_cache_rejects_bad_size() -> None:
    with pytest.raises(ValueError):
        KeyCache(maxsize=0)


# --- blind indexes and tokens ---

INDEX_RING = Keyring({1: FIXED_KEY}, 1, FIXED_INDEX_KEY)


def test_blind_index_known_answer() -> None:
    expected = hmac.new(
        FIXED_INDEX_KEY, lp("stemme/blind-index/v1", "sms", "+4512345678"), hashlib.sha256
    ).hexdigest()
    got = blind_index(INDEX_RING, channel="sms", address="+4512345678")
    assert got == expected
    assert got == "38d4e77dd7c7089fadae31901903a1d82edad057b003d06df3c5ca880503bde6"


def test_blind_index_properties() -> None:
    first = blind_index(KEYRING, channel="sms", address="+4512345678")
    assert re.fullmatch(r"[0-9a-f]{64}", first)
    assert blind_index(KEYRING, channel="sms", address="+4512345678") == first
    assert blind_index(KEYRING, channel="email", address="+4512345678") != first
    assert blind_index(KEYRING, channel="sms", address="+4512345679") != first
    other_index = Keyring(dict(KEYRING.master_keys), 1, new_data_key())
    assert blind_index(other_index, channel="sms", address="+4512345678") != first
    # Rotating master keys must not change indexes: they are stored and looked up later.
    assert blind_index(KEYRING.with_new_version(), channel="sms", address="+4512345678") == first


def test_blind_index_encoding_is_unambiguous() -> None:
    assert blind_index(KEYRING, channel="sms|a", address="b") != blind_index(
        KEYRING, channel="sms", address="a|b"
    )
    assert blind_index(KEYRING, channel="ab", address="c") != blind_index(
        KEYRING, channel="a", address="bc"
    )


@given(st.text(max_size=10), st.text(max_size=30))
def test_blind_index_is_hex_for_any_input(channel: str, address: str) -> None:
    digest = blind_index(KEYRING, channel=channel, address=address)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)


def test_token_digest() -> None:
    token = random_token()
    digest = token_digest(KEYRING, token)
    assert digest == blind_index(KEYRING, channel="token", address=token)
    assert digest != blind_index(KEYRING, channel="webchat", address=token)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert token not in digest


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("abc", "abc", True),
        ("abc", "abd", False),
        ("abc", "abcd", False),
        (b"abc", b"abc", True),
        ("abc", b"abc", True),
        ("æøå", "æøå", True),
        ("æ", b"\xc3\xa6", True),
        ("æ", "a", False),
        ("", "", True),
        ("", b"\x00", False),
    ],
)
def test_constant_time_equals(a: str | bytes, b: str | bytes, expected: bool) -> None:
    assert constant_time_equals(a, b) is expected


def test_random_token() -> None:
    tokens = {random_token() for _ in range(1000)}
    assert len(tokens) == 1000
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{32}", t) for t in tokens)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", random_token(32))
    with pytest.raises(ValueError):
        random_token(15)


# --- errors ---


def test_error_hierarchy_and_attributes() -> None:
    assert issubclass(DecryptionError, CryptoError)
    assert issubclass(UnknownKeyVersion, CryptoError)
    assert issubclass(KeyDestroyed, CryptoError)
    assert not issubclass(UnknownKeyVersion, DecryptionError)
    unknown = UnknownKeyVersion(3, "master")
    assert (unknown.version, unknown.kind) == (3, "master")
    assert str(unknown) == "unknown master key version 3"
    destroyed = KeyDestroyed(CASE)
    assert destroyed.case_id == CASE
    assert CASE in str(destroyed)


def test_errors_survive_pickling() -> None:
    unknown = pickle.loads(pickle.dumps(UnknownKeyVersion(9, "data")))
    assert (type(unknown), unknown.version, unknown.kind) == (UnknownKeyVersion, 9, "data")
    destroyed = pickle.loads(pickle.dumps(KeyDestroyed(CASE)))
    assert (type(destroyed), destroyed.case_id) == (KeyDestroyed, CASE)
