"""The webhook's settings (docs/configuration.md): a URL needs its own secret,
which is refused when missing, short, the development secret outside dev or
the JWT secret; the secret never prints; the bounds are checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from fieldpush.errors import ConfigError
from fieldpush.settings import DEV_JWT_SECRET, Secret, Settings, load_settings

URL = "https://crm.example.com/hooks/fieldpush"
GOOD = "whsec-0123456789abcdef0123456789abcdef"


def test_off_by_default_and_needs_no_secret_then() -> None:
    settings = Settings()
    assert settings.webhook_url is None
    settings.check()


def test_a_url_without_a_secret_refuses_the_start(tmp_path: Path) -> None:
    config = tmp_path / "fieldpush.toml"
    config.write_text(f'webhook_url = "{URL}"\n')
    with pytest.raises(ConfigError, match="webhook_secret is not"):
        load_settings(config_path=config, environ={})
    settings = load_settings(config_path=config, environ={"FIELDPUSH_WEBHOOK_SECRET": GOOD})
    assert settings.webhook_secret == Secret(GOOD)
    assert GOOD not in repr(settings)


@pytest.mark.parametrize(
    ("secret", "dev", "match"),
    [
        ("short", False, "at least 32 bytes"),
        (DEV_JWT_SECRET, False, "development secret"),
        ("a-jwt-secret-of-more-than-32-bytes-here", False, "differ from jwt_secret"),
    ],
)
def test_unusable_secrets_are_refused(secret: str, dev: bool, match: str) -> None:
    jwt = Secret("a-jwt-secret-of-more-than-32-bytes-here")
    with pytest.raises(ConfigError, match=match):
        Settings(webhook_url=URL, webhook_secret=Secret(secret), jwt_secret=jwt, dev=dev).check()


def test_the_development_secret_is_accepted_in_dev_mode_only() -> None:
    Settings(webhook_url=URL, webhook_secret=Secret(DEV_JWT_SECRET), dev=True).check()


@pytest.mark.parametrize(
    "url", ["ftp://crm.example.com/x", "crm.example.com/hook", "http://", "https://a\nb"]
)
def test_only_http_urls(url: str) -> None:
    with pytest.raises(ConfigError, match="webhook_url"):
        Settings(webhook_url=url, webhook_secret=Secret(GOOD)).check()


@pytest.mark.parametrize(
    "changes",
    [
        {"webhook_batch_entries": 0},
        {"webhook_batch_entries": 5001},
        {"webhook_linger_s": -1.0},
        {"webhook_timeout_s": 0.0},
        {"webhook_lease_s": 0.0},
        {"webhook_backoff_min_s": 0.0},
        {"webhook_backoff_min_s": 10.0, "webhook_backoff_max_s": 1.0},
    ],
)
def test_bounds(changes: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match="webhook_"):
        Settings(**changes).check()  # type: ignore[arg-type]
