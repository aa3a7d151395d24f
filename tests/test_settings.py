from __future__ import annotations

from pathlib import Path

import pytest

from bot.settings import ConfigError, Settings


def test_demo_defaults_need_nothing() -> None:
    settings = Settings.from_env({})
    assert settings.mode == "demo"
    assert settings.effective_database_url == "sqlite+aiosqlite:///var/stemme.db"
    assert settings.public_url("/c/x") == "http://127.0.0.1:8080/c/x"


def test_port_moves_the_default_public_url() -> None:
    assert Settings.from_env({"STEMME_PORT": "9000"}).public_base_url == "http://127.0.0.1:9000"


def test_production_without_keys_and_https_says_what_to_set() -> None:
    with pytest.raises(ConfigError) as error:
        Settings.from_env({"STEMME_MODE": "production"})
    message = str(error.value)
    assert "STEMME_MASTER_KEY" in message and "STEMME_INDEX_KEY" in message
    assert "STEMME_KEY_FILE" in message and "STEMME_PUBLIC_BASE_URL" in message


def test_production_refuses_plain_http() -> None:
    with pytest.raises(ConfigError, match="https"):
        Settings.from_env(
            {
                "STEMME_MODE": "production",
                "STEMME_KEY_FILE": "/k.json",
                "STEMME_PUBLIC_BASE_URL": "http://stemme.example.dk",
            }
        )


def test_production_with_what_it_needs_starts(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "STEMME_MODE": "production",
            "STEMME_MASTER_KEY": "1:abc",
            "STEMME_INDEX_KEY": "abc",
            "STEMME_PUBLIC_BASE_URL": "https://stemme.example.dk",
        }
    )
    assert settings.production and settings.secure_cookies
    assert "abc" not in repr(settings)  # secrets stay out of logs and tracebacks


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STEMME_PORT", "eighty"),
        ("STEMME_MODE", "staging"),
        ("STEMME_PUBLIC_BASE_URL", "stemme.example.dk"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_settings_are_frozen() -> None:
    settings = Settings.from_env({})
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]
