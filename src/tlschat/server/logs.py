"""The daemon's log: tlschat's own loggers only (never the root logger), text or JSON lines.

PRODUCT.md "Operating it": one event a line on stderr; `--log-level` sets tlschat's loggers, not
the libraries'; message text and passwords never appear at any level (the rules log nicks, IPs
and counts only)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

LIBRARY_LOGGERS = ("asyncio",)
"""Libraries whose warnings reach the daemon's stderr (asyncio: slow callbacks in debug mode,
errors in callbacks): they go through tlschat's handler, so a JSON log stays all JSON; their
levels are left as they are."""


class JsonFormatter(logging.Formatter):
    """One JSON object a line: `ts` (UTC, ISO 8601), `level`, `logger`, `msg` (and `exc`)."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def setup_logging(level: str = "INFO", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Send the `tlschat` loggers to `stream` (stderr) at `level`, as `text` or `json`.

    Idempotent: a second call replaces the handler it installed. The root logger and the levels
    of other libraries' loggers are left as they are; `LIBRARY_LOGGERS` share the handler."""
    name = level.upper()
    if name not in LEVELS:
        raise ValueError(f"unknown log level {level!r}")
    logger = logging.getLogger("tlschat")
    for handler in list(logger.handlers):
        if getattr(handler, "_tlschat", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._tlschat = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    logger.addHandler(handler)
    logger.setLevel(getattr(logging, name))
    logger.propagate = False
    for library in LIBRARY_LOGGERS:
        other = logging.getLogger(library)
        for old in list(other.handlers):
            if getattr(old, "_tlschat", False):
                other.removeHandler(old)
        other.addHandler(handler)
        other.propagate = False
