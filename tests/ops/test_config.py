"""Configuration layering and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.config import ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_match_the_design() -> None:
    config = load_config(None, environ={})
    assert (config.server.host, config.server.port, config.server.workers) == ("127.0.0.1", 8000, 1)
    assert config.redis.url is None and config.server.allowed_origins == ()
    assert (config.auth.algorithm, config.auth.issuer, config.auth.audience) == ("HS256", "livevote", "livevote")
    assert (config.auth.access_ttl, config.auth.refresh_ttl, config.auth.session_max_age) == (900, 604800, 2592000)
    assert (config.auth.refresh_ahead, config.auth.reuse_grace) == (60, 10)
    assert config.store_url == "sqlite:///data/livevote.db"


def test_shipped_config_file_is_valid() -> None:
    shipped = load_config(Path(__file__).parents[2] / "config.yaml", environ={})
    assert shipped == load_config(None, environ={})


def test_env_beats_file_and_flags_beat_env(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  port: 8100\n  host: 0.0.0.0\n")
    environ = {"LIVEVOTE_SERVER__PORT": "8200", "LIVEVOTE_SERVER__ALLOWED_ORIGINS": '["https://a.example"]',
               "LIVEVOTE_SERVER__EMBED_ORIGINS": '["https://school.example", "http://127.0.0.1:8081"]'}
    config = load_config(path, environ=environ)
    assert (config.server.host, config.server.port) == ("0.0.0.0", 8200)
    assert config.server.allowed_origins == ("https://a.example",)
    assert config.server.embed_origins == ("https://school.example", "http://127.0.0.1:8081")
    assert load_config(path, environ=environ, overrides={"server.port": 8300}).server.port == 8300


def test_unrelated_environment_is_ignored() -> None:
    config = load_config(None, environ={"LIVEVOTE_TEST_MONGODB_URL": "mongodb://x", "PATH": "/bin"})
    assert config == load_config(None, environ={})


@pytest.mark.parametrize("environ, key", [
    ({"LIVEVOTE_SERVER__PORT": "eighty"}, "server.port"),
    ({"LIVEVOTE_SERVER__PORT": "70000"}, "server.port"),
    ({"LIVEVOTE_AUTH__ACCESS_TTL": "-1"}, "auth.access_ttl"),
    ({"LIVEVOTE_AUTH__ALGORITHM": "none"}, "auth.algorithm"),
    ({"LIVEVOTE_SERVER__COLOUR": "red"}, "server.colour"),
    ({"LIVEVOTE_NOPE__KEY": "1"}, "nope"),
    ({"LIVEVOTE_SERVER__EMBED_ORIGINS": '["https://school.example/page"]'}, "server.embed_origins"),
    ({"LIVEVOTE_SERVER__EMBED_ORIGINS": '["https://a.example; script-src *"]'}, "server.embed_origins"),
])
def test_bad_values_name_their_key(environ: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, environ=environ)
    assert key in str(caught.value)


@pytest.mark.parametrize("text", ["server: [1, 2]\n", "- a\n", "server:\n  port: [\n"])
def test_malformed_files_are_reported(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), environ={})
    assert str(tmp_path) in str(caught.value)


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml", environ={})
