"""Settings that would let hostile input in (issue 11, defect 9): the
development secret is refused whenever forwarded headers are trusted."""

from __future__ import annotations

from pathlib import Path

import pytest

from fieldpush.errors import ConfigError
from fieldpush.settings import Secret, Settings, load_settings


@pytest.mark.parametrize("dev", [False, True])
@pytest.mark.parametrize("proxies", ["*", "10.0.0.1"])
def test_the_development_secret_is_refused_behind_a_proxy(dev: bool, proxies: str) -> None:
    """A loopback bind behind a proxy serves anyone the proxy forwards: an
    admin token minted from the public secret would publish."""
    with pytest.raises(ConfigError, match=r"forwarded_allow_ips.*set jwt_secret"):
        Settings(host="127.0.0.1", forwarded_allow_ips=proxies, dev=dev).check()
    secret = Secret("a-real-secret-that-is-at-least-32-bytes")
    Settings(host="127.0.0.1", forwarded_allow_ips=proxies, jwt_secret=secret).check()
    Settings(host="127.0.0.1").check()  # loopback without a proxy: still accepted


def test_startup_refuses_it_from_the_environment(tmp_path: Path) -> None:
    """What ``fieldpush serve`` loads: the refusal comes before anything listens."""
    config = tmp_path / "fieldpush.toml"
    config.write_text('host = "127.0.0.1"\n')
    with pytest.raises(ConfigError, match="development JWT secret"):
        load_settings(config_path=config, environ={"FIELDPUSH_FORWARDED_ALLOW_IPS": "*"})


@pytest.mark.parametrize("name", ["header_timeout_s", "max_header_bytes", "max_header_count"])
def test_head_limits_must_be_positive(name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings(**{name: 0}).check()


def test_scim_token_is_a_secret_of_32_bytes_or_more(tmp_path: Path) -> None:
    """SCIM's bearer secret (docs/configuration.md): from the environment or the
    file, never printed, refused when short; empty means SCIM is off."""
    config = tmp_path / "fieldpush.toml"
    config.write_text('scim_token = "short"\n')
    with pytest.raises(ConfigError, match="scim_token must be at least 32 bytes"):
        load_settings(config_path=config, environ={})
    long = "s" * 32
    settings = load_settings(config_path=config, environ={"FIELDPUSH_SCIM_TOKEN": long})
    assert settings.scim_token == Secret(long)
    assert long not in repr(settings)
    config.write_text("")
    assert (
        load_settings(config_path=config, environ={"FIELDPUSH_SCIM_TOKEN": ""}).scim_token is None
    )
