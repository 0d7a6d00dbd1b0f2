"""Files in the chat, in words: sizes, one-line summaries, why an upload or a download failed."""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from pathlib import Path

from tlschat.client.errors_text import explain_failure
from tlschat.protocol import ConnectionClosed, FileMeta, RequestFailed

IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
"""What the server decodes and verifies as an image (PROTOCOL.md "Files and images")."""

_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f/\\]")


def human_size(size: int) -> str:
    """`136 B`, `12.5 KiB`, `3.2 MiB`."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    raise AssertionError("unreachable")


def is_image(meta: FileMeta) -> bool:
    """An image the server verified: one of its types, with its dimensions."""
    return meta.mime in IMAGE_TYPES and bool(meta.width) and bool(meta.height)


def summary(meta: FileMeta, *, times: str = "×") -> str:
    """`red.png (image/png, 136 B, 64×48)`: what a person needs to know about a file."""
    dims = f", {meta.width}{times}{meta.height}" if meta.width and meta.height else ""
    return f"{meta.name} ({meta.mime}, {human_size(meta.size)}{dims})"


def safe_name(name: str, fallback: str = "download") -> str:
    """A file name to save a download under: no directories, no control characters."""
    cleaned = _UNSAFE_NAME.sub("_", name).strip().lstrip(".")
    return cleaned[:200] or fallback


def check_readable(path: Path, max_upload: int | None) -> int:
    """The size of the regular file at `path`, or OSError / RequestFailed(`too_large`) in words.

    Blocking (stat and open): call it through `asyncio.to_thread` from the event loop.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        raise OSError(f"{path}: no such file") from None
    except OSError as exc:
        raise OSError(f"{path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise OSError(f"{path} is a folder, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise OSError(f"{path} is not a regular file")
    if not os.access(path, os.R_OK):
        raise OSError(f"{path}: permission denied (cannot read it)")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise OSError(f"{path}: {exc.strerror or exc}") from None
    if max_upload is not None and info.st_size > max_upload:
        raise RequestFailed("too_large", too_large_text(path.name, info.st_size, max_upload))
    return info.st_size


def too_large_text(name: str, size: int, limit: int) -> str:
    return (
        f"{name} is too large ({human_size(size)}): this server accepts files "
        f"up to {human_size(limit)}"
    )


def _in_words(exc: BaseException) -> str:
    """The shared sentence of errors_text (for what is not about files), to follow a colon."""
    text = explain_failure(exc).rstrip(".")
    if text[:1].isupper() and text[1:2].islower():
        text = text[0].lower() + text[1:]  # "The server ..." reads "the server ..." after a colon
    return text


def upload_failure(exc: BaseException, name: str, limit: int | None = None) -> str:
    """Why sending the file `name` failed, in plain words."""
    if isinstance(exc, RequestFailed):
        if exc.code == "too_large":
            if exc.message.startswith(f"{name} is too large"):
                return exc.message
            if limit is not None:
                return f"{name} is too large: this server accepts files up to {human_size(limit)}"
            return exc.message or f"{name} is too large for this server"
        if exc.code == "bad_file":
            return f"the server refused {name}: it is not a valid image"
        if exc.code == "hash_mismatch":
            return f"{name} changed while it was being sent; try again"
        if exc.code == "rate_limited":
            return "too many uploads at once: wait for one to finish and try again"
        return f"{name}: {_in_words(exc)}"
    if isinstance(exc, TimeoutError):
        return f"sending {name} was interrupted: the server stopped answering"
    if isinstance(exc, OSError):
        return str(exc) or f"cannot read {name}"
    if isinstance(exc, ConnectionClosed):
        return f"sending {name} was interrupted: the connection was lost"
    return f"sending {name} was interrupted: {exc}"


def download_failure(exc: BaseException, name: str) -> str:
    """Why fetching the file `name` failed, in plain words."""
    if isinstance(exc, RequestFailed):
        if exc.code == "no_such_file":
            return f"you may not download {name} (or it no longer exists)"
        return f"{name}: {_in_words(exc)}"
    if isinstance(exc, TimeoutError):
        return f"downloading {name} was interrupted: the server stopped answering"
    if isinstance(exc, ConnectionClosed):
        return f"downloading {name} was interrupted: the connection was lost"
    if isinstance(exc, OSError):
        return str(exc) or f"cannot write {name}"
    return f"downloading {name} failed: {exc}"


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, fsync it, then rename it over `path`.

    Blocking: call it through `asyncio.to_thread` from the event loop.
    """
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:64]}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def copy_atomically(source: Path, path: Path, *, replace: bool = False) -> None:
    """Copy `source` to `path` through a temporary file beside it; FileExistsError if `path`
    exists and not `replace` (never overwrite silently). Blocking."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:64]}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, source.open("rb") as src:
            shutil.copyfileobj(src, out, 1024 * 1024)
            out.flush()
            os.fsync(out.fileno())
        if replace:
            os.replace(name, path)
        else:
            try:
                os.link(name, path)  # fails if `path` appeared meanwhile
            except FileExistsError:
                raise
            except OSError:  # no hard links here (FAT, some network drives)
                if path.exists():
                    raise FileExistsError(f"{path} exists") from None
                os.replace(name, path)
            else:
                os.unlink(name)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
