"""Server settings: defaults from PROTOCOL.md "Limits and abuse", merged from TOML, environment and flags."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tlschat.protocol import DEFAULT_MAX_FRAME, TlsChatError

ENV_PREFIX = "TLSCHAT_"


class ConfigError(TlsChatError):
    """A setting that cannot be used; the message is one line for the user."""


@dataclass(frozen=True)
class ServerConfig:
    """Everything `tlschat serve` can be told. Field names are the config-file keys."""

    host: str = "0.0.0.0"
    port: int = 7700
    cert: Path | None = None
    key: Path | None = None
    data_dir: Path | None = None
    """None: the platform's data directory (platformdirs)."""
    files_dir: Path | None = None
    """Where uploaded files live; None: DATA_DIR/files. Several nodes share one (an NFS mount,
    say): each has its own data directory, and every node must reach every blob."""
    name: tuple[str, ...] = ()
    """Extra host names for the generated certificate's SAN."""
    tls_min: str = "1.3"
    require_password: bool = False
    client_ca: Path | None = None
    keylog: Path | None = None
    """Write TLS secrets here (debugging only; never on by default)."""
    log_level: str = "INFO"
    log_format: str = "text"
    """`text` (one line an event) or `json` (one JSON object a line)."""
    metrics: str | None = None
    """HOST:PORT to serve Prometheus metrics on (plain HTTP), or None."""
    database: str | None = None
    """A PostgreSQL DSN (`postgresql://...`) shared by several nodes; None: the SQLite file in
    the data directory."""
    admin: tuple[str, ...] = ()
    """Nicks of the server's administrators (PROTOCOL.md "Administration")."""
    registration: str = "open"
    """`open`: a hello with a password registers a new nick; `closed`: only admins `register`."""
    redis: str | None = None
    """redis://HOST:PORT/DB (or rediss://, unix://): join the other nodes sharing this Redis
    (server/redis_hub.py); None: this process alone (the in-process hub)."""
    node_heartbeat: float = 5.0
    """With `redis`: seconds between this node's heartbeats; a node silent for three of them is
    declared dead (its users go offline, the others stop waiting for its messages)."""

    handshake_timeout: float = 10.0
    login_timeout: float = 10.0
    idle_timeout: float = 90.0
    frame_timeout: float = 10.0
    """A frame's body must arrive within this many seconds of its length."""

    max_frame: int = DEFAULT_MAX_FRAME
    max_text: int = 4000
    max_upload: int = 10 * 1024 * 1024
    chunk: int = 32 * 1024
    rate_burst: int = 20
    rate_per_sec: float = 5.0
    upload_rate: int = 4 * 1024 * 1024
    """Bytes per second of upload `chunk` data, per user."""
    max_queue: int = 256 * 1024
    max_conns: int = 1024
    max_per_ip: int = 16
    max_unauth: int = 256
    """Connections not yet logged in, in all; when all are taken, a new one closes the oldest."""
    max_unauth_per_ip: int = 8
    max_login_failures: int = 3
    """Login attempts per IP per window (each takes a slot when it starts; a success frees it)."""
    max_nick_failures: int = 20
    """Login attempts per nick per window over all IPs (never refusing an IP with no failure)."""
    login_failure_window: float = 60.0
    max_registrations: int = 10
    """New accounts per IP per hour."""
    max_bad_frames: int = 20
    """Bad frames (bad_frame, bad_request, unknown_type) allowed in a minute; one more closes."""
    guest_hold: float = 600.0
    """Seconds a guest's nick, groups and conversations are kept after its last session."""
    max_members: int = 256
    max_rooms_per_user: int = 100
    invite_ttl: float = 7 * 24 * 3600.0
    max_pending_uploads: int = 2
    upload_idle_timeout: float = 60.0
    unsent_file_ttl: float = 24 * 3600.0
    """Seconds an upload no message carries is kept before garbage collection removes it."""
    hash_concurrency: int = 2
    """Password hashes computed at once (argon2id is memory-hard: bound it)."""

    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


_PATH_FIELDS = {"cert", "key", "data_dir", "files_dir", "client_ca", "keylog"}


def _coerce(name: str, raw: Any) -> Any:
    """Turn a TOML or environment value into the field's type; raise ConfigError with the key."""
    fields = {f.name: f for f in dataclasses.fields(ServerConfig)}
    if name not in fields or name == "extra":
        raise ConfigError(f"unknown setting {name!r}")
    default = fields[name].default
    try:
        if name in _PATH_FIELDS:
            return None if raw in (None, "") else Path(str(raw)).expanduser()
        if name in ("metrics", "redis", "database"):
            return None if raw in (None, "") else str(raw)
        if name in ("name", "admin"):
            if isinstance(raw, str):
                return tuple(part for part in raw.replace(",", " ").split() if part)
            return tuple(str(part) for part in raw)
        if isinstance(default, bool):
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off"}:
                return False
            raise ValueError(raw)
        if isinstance(default, int):
            if isinstance(raw, bool):
                raise ValueError(raw)
            return int(raw)
        if isinstance(default, float):
            if isinstance(raw, bool):
                raise ValueError(raw)
            return float(raw)
        return str(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"setting {name!r}: {raw!r} is not a valid value") from None


def load_toml(path: Path) -> dict[str, Any]:
    """The settings in a TOML file (top level, or under a `[serve]` table)."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    table = data.get("serve", data)
    if not isinstance(table, dict):
        raise ConfigError(f"config file {path}: [serve] must be a table")
    return {key.replace("-", "_"): value for key, value in table.items()}


def load_env(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """`TLSCHAT_MAX_QUEUE=...` and friends; unknown TLSCHAT_ variables are ignored."""
    environ = dict(os.environ if environ is None else environ)
    names = {f.name for f in dataclasses.fields(ServerConfig)} - {"extra"}
    found: dict[str, Any] = {}
    for key, value in environ.items():
        if key.startswith(ENV_PREFIX):
            name = key[len(ENV_PREFIX) :].lower()
            if name in names:
                found[name] = value
    return found


def build_config(*layers: dict[str, Any]) -> ServerConfig:
    """Merge layers (later wins) over the defaults, coercing and checking each value."""
    values: dict[str, Any] = {}
    for layer in layers:
        for name, raw in layer.items():
            if raw is None:
                continue
            values[name] = _coerce(name, raw)
    config = ServerConfig(**values)
    validate(config)
    return config


def validate(config: ServerConfig) -> None:
    if config.registration not in {"open", "closed"}:
        raise ConfigError(f"--registration must be open or closed, not {config.registration!r}")
    if config.log_format not in {"text", "json"}:
        raise ConfigError(f"--log-format must be text or json, not {config.log_format!r}")
    if config.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ConfigError(
            f"--log-level must be DEBUG, INFO, WARNING or ERROR, not {config.log_level!r}"
        )
    if config.tls_min not in {"1.2", "1.3"}:
        raise ConfigError(f"--tls-min must be 1.3 or 1.2, not {config.tls_min!r}")
    if not 0 <= config.port <= 65535:
        raise ConfigError(f"port {config.port} is out of range (0-65535)")
    if config.database and not config.database.startswith(("postgresql://", "postgres://")):
        raise ConfigError("--database must be a postgresql:// URL")
    if config.redis is not None and not config.redis.startswith(
        ("redis://", "rediss://", "unix://")
    ):
        raise ConfigError(
            f"--redis must be a redis://, rediss:// or unix:// URL, not {config.redis!r}"
        )
    if (config.cert is None) != (config.key is None):
        raise ConfigError("--cert and --key go together")
    positive = [
        "max_frame",
        "max_text",
        "max_upload",
        "chunk",
        "rate_burst",
        "max_queue",
        "max_conns",
        "max_per_ip",
        "max_unauth",
        "max_unauth_per_ip",
        "max_login_failures",
        "max_nick_failures",
        "max_registrations",
        "max_members",
    ]
    for name in positive:
        if getattr(config, name) < 1:
            raise ConfigError(f"{name.replace('_', '-')} must be at least 1")
    for name in [
        "rate_per_sec",
        "login_timeout",
        "idle_timeout",
        "handshake_timeout",
        "node_heartbeat",
    ]:
        if getattr(config, name) <= 0:
            raise ConfigError(f"{name.replace('_', '-')} must be positive")
    if config.max_frame < 1024:
        raise ConfigError("max-frame must be at least 1024 bytes")
    if config.chunk * 4 // 3 + 256 > config.max_frame:
        raise ConfigError("chunk is too large for max-frame once base64-encoded")
