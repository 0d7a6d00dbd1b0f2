"""Settings: defaults from PROTOCOL.md, TOML, TLSCHAT_* environment, flags win."""

from __future__ import annotations

from pathlib import Path

import pytest

from tlschat.config import ConfigError, ServerConfig, build_config, load_env, load_toml


def test_defaults_are_the_protocol_limits() -> None:
    config = ServerConfig()
    assert config.port == 7700
    assert config.tls_min == "1.3"
    assert config.max_frame == 64 * 1024
    assert config.max_text == 4000
    assert config.max_upload == 10 * 1024 * 1024
    assert config.chunk == 32 * 1024
    assert (config.rate_burst, config.rate_per_sec) == (20, 5.0)
    assert config.max_queue == 256 * 1024
    assert (config.max_conns, config.max_per_ip, config.max_unauth) == (1024, 16, 256)
    assert config.max_unauth_per_ip == 8
    assert config.max_login_failures == 3
    assert config.max_members == 256
    assert config.max_rooms_per_user == 100
    assert config.invite_ttl == 7 * 24 * 3600
    assert config.idle_timeout == 90
    assert config.login_timeout == 10


def test_later_layers_win(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[serve]\nmax-text = 10\nport = 1\nrequire_password = true\nname = ["a", "b"]\n'
    )
    env = load_env({"TLSCHAT_MAX_TEXT": "20", "TLSCHAT_UNRELATED": "x", "HOME": "/"})
    config = build_config(load_toml(path), env, {"port": 3, "max_text": None})
    assert config.max_text == 20
    assert config.port == 3
    assert config.require_password is True
    assert config.name == ("a", "b")


@pytest.mark.parametrize(
    ("layer", "word"),
    [
        ({"port": "x"}, "port"),
        ({"port": 70000}, "port"),
        ({"max_queue": 0}, "max-queue"),
        ({"tls_min": "1.0"}, "tls-min"),
        ({"require_password": "maybe"}, "require_password"),
        ({"nonsense": 1}, "nonsense"),
        ({"cert": "/a.pem"}, "--key"),
        ({"max_frame": 100}, "max-frame"),
    ],
)
def test_bad_values_name_the_setting(layer: dict[str, object], word: str) -> None:
    with pytest.raises(ConfigError, match=word):
        build_config(layer)


def test_env_booleans_and_paths() -> None:
    config = build_config(load_env({"TLSCHAT_REQUIRE_PASSWORD": "yes", "TLSCHAT_DATA_DIR": "~/x"}))
    assert config.require_password is True
    assert config.data_dir is not None
    assert "~" not in str(config.data_dir)
