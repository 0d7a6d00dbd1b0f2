"""PROTOCOL.md "Files and images": streamed uploads, content-addressed storage, paced downloads."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import os
import re
import secrets
import shutil
import time
import unicodedata
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from tlschat.protocol import (
    HEADER,
    Chunk,
    Download,
    ErrorCode,
    FileData,
    FileMeta,
    RequestError,
    Upload,
    Uploaded,
    UploadReady,
    encode,
    encode_payload,
)
from tlschat.ratelimit import TokenBucket
from tlschat.server import imaging, metrics
from tlschat.server.image_check import ImageChecker
from tlschat.server.store import StoredBlob, StoredFile

if TYPE_CHECKING:
    from tlschat.config import ServerConfig
    from tlschat.server.registry import User
    from tlschat.server.rules.base import Peer as Session
    from tlschat.server.store import Store

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_DOWNLOADS = 4
"""Downloads one connection may run at once (each holds a task and reads a file)."""

FILE_ID_MAX = 64
RETRY_PENDING_MS = 1000
"""`retry_after_ms` for a third pending upload or a fifth download: we cannot know better."""

GC_INTERVAL = 3600.0
"""Seconds between garbage collections (one runs at every start, after the crash sweep)."""

SWEEP_MARGIN = 60.0
"""Seconds beyond the upload idle limit before the start-up sweep takes a part or an
unrecorded blob for a crash's leftover (another node may be finishing it)."""

SEND_GRACE = 60.0
"""Seconds a file named by a `send` in progress is kept from garbage collection: the rules
check the file, then store the message (`send_done` ends the send, stored or not)."""

_SEPARATORS = re.compile(r"[/\\]")
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
"""Format characters that reorder text: `evil\u202egnp.exe` would show as `evilexe.png`."""


def display_name(raw: str) -> str:
    """The name shown for an upload: the last component of `raw`, which is only ever displayed.

    Raise RequestError(`bad_request`) for control characters or a name that is no file name.
    """
    if any(unicodedata.category(c) == "Cc" or c in _BIDI_CONTROLS for c in raw):
        raise RequestError(
            ErrorCode.BAD_REQUEST, "member 'name': control characters are not allowed"
        )
    # Names never reach the file system here, but a client may save a download under it:
    # give it no directories to climb.
    parts = [part.strip() for part in _SEPARATORS.split(raw)]
    name = next((part for part in reversed(parts) if part), "")
    if name in {"", ".", ".."}:
        raise RequestError(ErrorCode.BAD_REQUEST, "member 'name': not a file name")
    return name


def _meta_room(meta: FileMeta) -> int:
    """Bytes a download's first chunk leaves out so that its `"meta":{...}` member fits in the
    frame: base64 takes 4 characters for every 3 bytes."""
    member = len(',"meta":') + len(encode_payload(meta))
    return 3 * -(-member // 4)


def file_meta(row: StoredFile) -> FileMeta:
    return FileMeta(
        id=row.id, name=row.name, size=row.size, mime=row.mime, sha256=row.sha256,
        width=row.width, height=row.height,
    )  # fmt: skip


# --- blocking helpers (run in a worker thread) --------------------------------------------------


def _create(path: Path) -> BinaryIO:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return os.fdopen(fd, "wb")


def _append(fh: BinaryIO, digest: Any, data: bytes) -> None:
    fh.write(data)
    digest.update(data)


def _seal(fh: BinaryIO) -> None:
    """Flush to the disk, then close: the blob must be durable before the database names it."""
    try:
        fh.flush()
        os.fsync(fh.fileno())
    finally:
        fh.close()


def _place(temp: Path, blob: Path) -> None:
    """Move the upload into its content address; if that content is there already, keep one copy."""
    blob.parent.mkdir(mode=0o700, exist_ok=True)
    if blob.exists():
        temp.unlink()
    else:
        os.replace(temp, blob)


def _drop(fh: BinaryIO | None, temp: Path) -> None:
    if fh is not None:
        fh.close()
    temp.unlink(missing_ok=True)


def _read_b64(path: Path, offset: int, count: int) -> tuple[int, str]:
    """(bytes read, their base64) from `offset`; fewer bytes only at the end of the file."""
    with path.open("rb") as fh:
        fh.seek(offset)
        data = fh.read(count)
    return len(data), base64.b64encode(data).decode("ascii")


def _sweep(root: Path, temp_dir: Path, known: set[str], before: float) -> int:
    """Remove what a crash left behind: partial uploads, and blobs the database never recorded,
    last written before `before` (a time.time()): another node sharing the folder may be
    writing or placing younger ones right now."""
    removed = 0
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    if temp_dir.exists():
        for entry in temp_dir.iterdir():
            if not _older(entry, before):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink(missing_ok=True)
            removed += 1
    temp_dir.mkdir(mode=0o700, exist_ok=True)
    for folder in root.iterdir():
        if len(folder.name) != 2 or folder == temp_dir or not folder.is_dir():
            continue
        for entry in folder.iterdir():
            if folder.name + entry.name not in known and entry.is_file() and _older(entry, before):
                entry.unlink(missing_ok=True)
                removed += 1
    return removed


def _older(path: Path, before: float) -> bool:
    try:
        return path.lstat().st_mtime < before
    except FileNotFoundError:
        return False


def _unlink_blobs(root: Path, hashes: list[str]) -> int:
    """Remove the content of blobs the database no longer records; the count removed."""
    removed = 0
    for sha256 in hashes:
        path = root / sha256[:2] / sha256[2:]
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        removed += 1
    return removed


# --- the service ----------------------------------------------------------------------------


@dataclass(eq=False)
class _Upload:
    """One upload between `upload_ready` and `uploaded`, bound to the session that began it."""

    id: str
    session: Session
    owner: str
    """The uploader's `User.key`: pending uploads and the byte rate are counted per user."""
    identity: str
    """The uploader's `User.identity`, recorded as the file's uploader (download rights)."""
    name: str
    size: int
    sha256: str
    ref: str | None
    temp: Path
    last_active: float
    file: BinaryIO | None = None
    digest: Any = field(default_factory=hashlib.sha256)
    received: int = 0
    next_seq: int = 0
    refused_seq: int | None = None
    """The chunk last refused for the byte rate: later pipelined chunks are refused too."""
    finishing: bool = False
    discarded: bool = False
    timer: asyncio.TimerHandle | None = None
    busy: asyncio.Future[Any] | None = None
    """The blocking call in flight on this upload's file, if any."""

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in a thread. If the caller is cancelled the call still completes, and
        `settle()` waits for it, so the file is never closed under a running write."""
        if self.discarded:
            raise RequestError(ErrorCode.BAD_REQUEST, "the upload was discarded")
        future = asyncio.ensure_future(asyncio.to_thread(fn, *args))
        self.busy = future
        result: T = await asyncio.shield(future)
        return result

    async def settle(self) -> None:
        if self.busy is not None and not self.busy.done():
            await asyncio.wait({self.busy})


class FileStore:
    """The rules' file service (`FileService`): uploads, storage, access and downloads.

    Layout under the data directory: `files/ab/cdef...` holds the content whose SHA-256 is
    `abcdef...` (stored once however often it is uploaded); `files/tmp/` holds uploads in progress,
    emptied at every start. The database holds each upload (a random file id, the display name,
    the uploader) and who may download it: the uploader and every recipient of a message carrying
    it. File names are display names only: no path is ever built from one. `collect_garbage`
    (at every start, then hourly) removes files no message carries once `unsent_file_ttl` has
    passed, and content no file names any more.
    """

    def __init__(self, config: ServerConfig, data_dir: Path, store: Store) -> None:
        self.config = config
        self.store = store
        self.root = config.files_dir or data_dir / "files"
        self.temp_dir = self.root / "tmp"
        self._loop = asyncio.get_running_loop()
        self._uploads: dict[str, _Upload] = {}
        self._pending: dict[str, set[_Upload]] = {}
        """User key -> its uploads in progress (PROTOCOL.md: 2 per user)."""
        self._buckets: dict[str, TokenBucket] = {}
        """User key -> chunk bytes allowance (PROTOCOL.md: 4 MiB/s per user)."""
        self._buckets_pruned_at = 0
        self._downloads: dict[Session, set[asyncio.Task[None]]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._checker = ImageChecker()
        self._sending: dict[str, tuple[int, float]] = {}
        """File id -> (sends in progress, loop time of the last one begun): not collected."""
        self._collect_lock = asyncio.Lock()
        self._placing = 0
        """Finishing uploads between looking up their blob and recording their file row."""
        self._none_placing = asyncio.Event()
        self._none_placing.set()
        self._not_collecting = asyncio.Event()
        """Clear while blobs are being deleted: an upload of the same content must wait."""
        self._not_collecting.set()
        self._ready: asyncio.Future[None] = self._loop.create_future()
        """Done once crash leftovers are swept: before the first upload or download is served."""

        self._collector: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Sweep crash leftovers, then collect garbage now and hourly (once the daemon is up)."""
        self._spawn(self._recover_then_ready())
        self._collector = self._spawn(self._collect_periodically())

    async def _recover_then_ready(self) -> None:
        try:
            await self._recover()
        finally:
            if not self._ready.done():
                self._ready.set_result(None)

    # --- the FileService interface --------------------------------------------------------------

    async def handle(self, session: Session, frame: Any) -> None:
        """Serve an `upload`, `chunk` or `download` frame; replies are queued on `session`."""
        await asyncio.shield(self._ready)
        if isinstance(frame, Upload):
            await self._begin(session, frame)
        elif isinstance(frame, Chunk):
            await self._chunk(session, frame)
        elif isinstance(frame, Download):
            await self._download(session, frame)
        else:
            raise RequestError(ErrorCode.BAD_REQUEST, f"not a file request: {frame.type}")

    async def meta_for_send(self, user: User, file_id: str) -> FileMeta:
        row = await self._file_for(user, file_id)
        count, _ = self._sending.get(row.id, (0, 0.0))
        self._sending[row.id] = (count + 1, self._loop.time())
        return file_meta(row)

    async def metas(self, file_ids: Iterable[str]) -> dict[str, FileMeta]:
        rows = await self.store.files(file_ids)
        return {file_id: file_meta(row) for file_id, row in rows.items()}

    def send_done(self, file_id: str) -> None:
        # The message is stored (it keeps the file from garbage collection from now on), or it
        # failed: either way this send no longer needs the file kept.
        count, began = self._sending.pop(file_id, (1, 0.0))
        if count > 1:
            self._sending[file_id] = (count - 1, began)

    async def close(self) -> None:
        """Daemon shutdown: stop downloads and background work, drop unfinished uploads."""
        if self._collector is not None:
            self._collector.cancel()
        for tasks in self._downloads.values():
            for task in tasks:
                task.cancel()
        for upload in list(self._uploads.values()):
            self._discard(upload, "shutdown")  # spawns the removal of its partial file
        if self._background:
            await asyncio.wait(set(self._background), timeout=5)
        for task in self._background:
            task.cancel()

    def session_ended(self, session: Session) -> None:
        """The connection is gone: stop its downloads, discard its unfinished uploads."""
        for task in self._downloads.pop(session, set()):
            task.cancel()
        for upload in [u for u in self._uploads.values() if u.session is session]:
            self._discard(upload, "disconnected")
        user = session.user
        if user is not None and len(user.sessions) <= 1:
            self._prune_bucket(user.key)

    # --- uploads --------------------------------------------------------------------------------

    async def _begin(self, session: Session, f: Upload) -> None:
        user = session.user
        assert user is not None
        name = display_name(f.name)
        if f.size > self.config.max_upload:
            raise RequestError(
                ErrorCode.TOO_LARGE, f"files are limited to {self.config.max_upload} bytes"
            )
        pending = self._pending.setdefault(user.key, set())
        if len(pending) >= self.config.max_pending_uploads:
            raise RequestError(
                ErrorCode.RATE_LIMITED,
                f"{self.config.max_pending_uploads} uploads are in progress already",
                retry_after_ms=RETRY_PENDING_MS,
            )
        upload_id = secrets.token_hex(12)
        upload = _Upload(
            id=upload_id, session=session, owner=user.key, identity=user.identity, name=name,
            size=f.size, sha256=f.sha256.lower(), ref=f.ref,
            temp=self.temp_dir / f"{upload_id}.part", last_active=self._loop.time(),
        )  # fmt: skip
        # Counted before the first await, so that concurrent requests see it.
        self._uploads[upload_id] = upload
        pending.add(upload)
        upload.file = await self._disk_step(upload, "cannot store files now", _create, upload.temp)
        upload.timer = self._loop.call_later(
            self.config.upload_idle_timeout, self._idle_check, upload
        )
        session.send(UploadReady(ref=f.ref, upload=upload_id, chunk=self.config.chunk))
        if f.size == 0:  # nothing to wait for
            await self._finish(session, upload, f.ref)

    async def _chunk(self, session: Session, f: Chunk) -> None:
        upload = self._uploads.get(f.upload)
        if upload is None or upload.session is not session:
            raise RequestError(
                ErrorCode.BAD_REQUEST, "member 'upload': no such upload (done, failed or discarded)"
            )
        ref = f.ref if f.ref is not None else upload.ref
        try:
            await self._take_chunk(session, upload, f, ref)
        except RequestError as exc:
            # A chunk without a `ref` of its own is answered under the upload's, so that the
            # client learns how its upload ended.
            if f.ref is None and ref is not None:
                session.send_error(exc.code, exc.message, ref, exc.retry_after_ms)
                return
            raise

    async def _take_chunk(
        self, session: Session, upload: _Upload, f: Chunk, ref: str | None
    ) -> None:
        if f.seq != upload.next_seq:
            if upload.refused_seq == upload.next_seq and f.seq > upload.next_seq:
                # Sent behind a chunk refused for the byte rate: refuse it too, the upload goes on.
                raise self._slow_down(self._bucket_wait(upload))
            self._discard(upload, "out of order")
            raise RequestError(ErrorCode.BAD_REQUEST, f"member 'seq': expected {upload.next_seq}")
        chunk = self.config.chunk
        try:
            if len(f.data) > 4 * (chunk // 3 + 1):
                raise ValueError("too long")
            data = base64.b64decode(f.data, validate=True)
        except (ValueError, binascii.Error):
            self._discard(upload, "bad data")
            raise RequestError(
                ErrorCode.BAD_REQUEST, f"member 'data': base64 of 1 to {chunk} bytes"
            ) from None
        if not data or len(data) > chunk:
            self._discard(upload, "bad chunk")
            raise RequestError(
                ErrorCode.BAD_REQUEST, f"member 'data': base64 of 1 to {chunk} bytes"
            )
        if upload.received + len(data) > upload.size:
            self._discard(upload, "too many bytes")
            raise RequestError(
                ErrorCode.BAD_REQUEST, f"more than the {upload.size} bytes announced"
            )
        wait = self._bucket(upload.owner).take(len(data))
        if wait:
            upload.refused_seq = f.seq
            raise self._slow_down(wait)
        upload.refused_seq = None
        upload.last_active = self._loop.time()
        await self._disk_step(
            upload, "cannot store the file", _append, upload.file, upload.digest, data
        )
        upload.received += len(data)
        metrics.UPLOAD_BYTES.inc(len(data))
        upload.next_seq += 1
        if upload.received == upload.size:
            await self._finish(session, upload, ref)

    def _slow_down(self, seconds: float) -> RequestError:
        """`rate_limited` for a chunk over the user's byte rate: nothing of it is kept; send
        it again (same `seq`) after `retry_after_ms`."""
        retry = max(1, int(seconds * 1000 + 0.999))
        return RequestError(ErrorCode.RATE_LIMITED, "chunks over the upload byte rate", retry)

    def _bucket_wait(self, upload: _Upload) -> float:
        """Seconds until the next chunk (a full one, at most) would pass the byte rate."""
        bucket = self._bucket(upload.owner)
        bucket.take(0)  # brings `tokens` up to date
        missing = min(self.config.chunk, upload.size - upload.received) - bucket.tokens
        return max(0.001, missing / bucket.rate)

    async def _finish(self, session: Session, upload: _Upload, ref: str | None) -> None:
        """All bytes are in: check the hash, find out what the bytes are, store them once."""
        upload.finishing = True
        if upload.timer is not None:
            upload.timer.cancel()
        try:
            file, upload.file = upload.file, None
            await upload.run(_seal, file)
            digest = upload.digest.hexdigest()
            if digest != upload.sha256:
                raise RequestError(
                    ErrorCode.HASH_MISMATCH, "the bytes do not match member 'sha256'"
                )
            await self._begin_placing()
            try:
                blob = await self.store.file_blob(digest)
                if blob is None:
                    try:
                        found = await self._checker.analyse(upload.temp, upload.owner)
                    except imaging.BadImage as exc:
                        log.debug("upload %s is no image: %r", upload.id, exc.__cause__ or exc)
                        raise RequestError(ErrorCode.BAD_FILE, str(exc)) from None
                    blob = StoredBlob(digest, upload.size, found.mime, found.width, found.height)
                # Shared with the uploads of every node; the garbage collection of any node
                # waits: it cannot delete content being placed here before it is recorded.
                async with self.store.blob_lock(exclusive=False):
                    await upload.run(_place, upload.temp, self._blob_path(digest))
                    await self.store.add_blob(blob)
                    # Hex, not base64url: an id starting with '-' reads as an option on a
                    # command line (`tlschat get HOST NICK -x…`), which made one test run in 64
                    # fail.
                    file_id = secrets.token_hex(16)
                    await self.store.add_file(file_id, digest, upload.name, upload.identity)
            finally:
                self._end_placing()
        except OSError:
            log.exception("cannot store %s", upload.temp)
            self._discard(upload, "store failed")
            raise RequestError(ErrorCode.INTERNAL, "cannot store the file") from None
        except BaseException:
            self._discard(upload, "refused")
            raise
        self._forget(upload)
        log.info("%s uploaded %s (%d bytes, %s)", upload.owner, file_id, blob.size, blob.mime)
        row = StoredFile(
            file_id,
            upload.name,
            upload.identity,
            digest,
            blob.size,
            blob.mime,
            blob.width,
            blob.height,
        )
        session.send(Uploaded(ref=ref, file=file_meta(row)))

    def _blob_path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:]

    def _forget(self, upload: _Upload) -> None:
        """No longer pending (done, or being discarded)."""
        self._uploads.pop(upload.id, None)
        pending = self._pending.get(upload.owner)
        if pending is not None:
            pending.discard(upload)
            if not pending:
                del self._pending[upload.owner]
        if upload.timer is not None:
            upload.timer.cancel()
            upload.timer = None

    async def _disk_step(
        self, upload: _Upload, refusal: str, fn: Callable[..., T], *args: Any
    ) -> T:
        """Run one write of `upload` in its thread; any failure discards the upload (a disk
        error becomes `internal` with `refusal` for the client, whose stream stays usable)."""
        try:
            return await upload.run(fn, *args)
        except OSError:
            log.exception("cannot write %s", upload.temp)
            self._discard(upload, "disk error")
            raise RequestError(ErrorCode.INTERNAL, refusal) from None
        except BaseException:
            self._discard(upload, "failed")
            raise

    def _discard(self, upload: _Upload, why: str) -> None:
        """Forget the upload and remove its partial file (once any write in flight is done)."""
        if upload.discarded:
            return
        upload.discarded = True
        self._forget(upload)
        log.info("upload %s of %s discarded: %s", upload.id, upload.owner, why)
        self._spawn(self._remove(upload))

    async def _remove(self, upload: _Upload) -> None:
        await upload.settle()
        file, upload.file = upload.file, None
        try:
            await asyncio.to_thread(_drop, file, upload.temp)
        except OSError:
            log.exception("cannot remove %s (the next start will)", upload.temp)

    def _idle_check(self, upload: _Upload) -> None:
        if upload.discarded or upload.finishing:
            return
        idle = self._loop.time() - upload.last_active
        timeout = self.config.upload_idle_timeout
        if idle >= timeout:
            self._discard(upload, f"idle for {timeout:g} s")
        else:
            upload.timer = self._loop.call_later(timeout - idle, self._idle_check, upload)

    def _bucket(self, key: str) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= 2 * self._buckets_pruned_at + 64:
                for other in list(self._buckets):
                    self._prune_bucket(other)
                self._buckets_pruned_at = len(self._buckets)
            rate = self.config.upload_rate
            bucket = self._buckets[key] = TokenBucket(rate, max(rate, self.config.chunk))
        return bucket

    def _prune_bucket(self, key: str) -> None:
        """Forget a user's byte allowance once it is full again (a reconnect gains nothing)."""
        bucket = self._buckets.get(key)
        if bucket is not None and key not in self._pending:
            bucket.take(0)  # brings `tokens` up to date
            if bucket.tokens >= bucket.burst:
                del self._buckets[key]

    # --- downloads ------------------------------------------------------------------------------

    async def _file_for(self, user: User, file_id: str) -> StoredFile:
        """The file if `user` may have it; `no_such_file` whether it is missing or forbidden,
        so that a file's existence is never revealed to someone who may not have it."""
        row = None
        if len(file_id) <= FILE_ID_MAX:
            row = await self.store.file_for(file_id, user.identity)
        if row is None:
            raise RequestError(ErrorCode.NO_SUCH_FILE, "no such file")
        return row

    async def _download(self, session: Session, f: Download) -> None:
        user = session.user
        assert user is not None
        row = await self._file_for(user, f.file)
        tasks = self._downloads.setdefault(session, set())
        if len(tasks) >= MAX_DOWNLOADS:
            raise RequestError(
                ErrorCode.RATE_LIMITED,
                f"{MAX_DOWNLOADS} downloads are in progress already",
                retry_after_ms=RETRY_PENDING_MS,
            )
        if session.closing:
            return
        # Its own task: the connection's reader goes on serving chat while the file streams.
        task = self._loop.create_task(self._stream(session, row, f.ref), name=f"download {row.id}")
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _stream(self, session: Session, row: StoredFile, ref: str | None) -> None:
        path = self._blob_path(row.sha256)
        meta = file_meta(row)
        step = self.config.chunk
        # The first frame also carries the metadata: its share of bytes shrinks to make room.
        first_step = max(1, step - _meta_room(meta))
        offset = seq = 0
        try:
            while not session.closing:
                want = first_step if seq == 0 else step
                count, data = await asyncio.to_thread(
                    _read_b64, path, offset, min(want, row.size - offset)
                )
                offset += count
                if count == 0 and offset < row.size:
                    raise OSError(f"{path} is shorter than {row.size} bytes")
                last = offset >= row.size
                frame = self._file_data(
                    FileData(ref=ref, file=row.id, seq=seq, data=data, last=last),
                    meta if seq == 0 else None,
                )
                # Half the queue stays free for chat, so a message arriving mid-download
                # never finds it full (that would drop the client as a slow consumer).
                await session.deliver_paced(frame, high=session.queue_limit // 2)
                if last:
                    return
                seq += 1
        except Exception:  # a task of its own: nobody else would hear of it
            log.exception("download of %s failed", row.id)
            session.send_error(ErrorCode.INTERNAL, "cannot read the file", ref)

    def _file_data(self, frame: FileData, meta: FileMeta | None) -> bytes:
        """`frame` encoded, with `meta` when given (docs/protocol.md "Files": a client verifies
        the download without finding the message that carried the file) and it fits."""
        if meta is not None:
            with_meta = encode(frame.model_copy(update={"meta": meta}))
            if len(with_meta) - HEADER.size <= self.config.max_frame:
                return with_meta
            # Only a max_frame too small for a long name: the download goes on without it.
        return encode(frame)

    # --- background -----------------------------------------------------------------------------

    def _spawn(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = self._loop.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _recover(self) -> None:
        # An upload of another node sharing the folder writes its part at least every
        # `upload_idle_timeout` seconds (or is dropped), and places it seconds after its last
        # chunk: what is older than that and unrecorded is a crash's.
        before = time.time() - self.config.upload_idle_timeout - SWEEP_MARGIN
        try:
            async with self.store.blob_lock(exclusive=True):
                known = await self.store.blob_hashes()
                removed = await asyncio.to_thread(_sweep, self.root, self.temp_dir, known, before)
        except Exception:
            log.exception("cannot clean up %s", self.root)
            return
        if removed:
            log.info("removed %d files left over by an earlier run", removed)

    # --- garbage collection ---------------------------------------------------------------------

    async def collect_garbage(self) -> tuple[int, int]:
        """Delete what nobody can reach any more; return (files, blobs) deleted.

        A file row goes once it is older than `unsent_file_ttl` and no stored message carries it
        (never sent, or its messages went with their room), with its access rows. A blob goes
        once no file row names it: database rows first, then the content on disk (a crash in
        between leaves an unrecorded blob, which the start-up sweep removes).
        """
        async with self._collect_lock:
            cutoff = time.time() - max(0.0, self.config.unsent_file_ttl)
            files = await self.store.delete_unsent_files(cutoff, keep=self._sends_in_progress())
            # No upload may look up its blob, place its content and record its file row while
            # blobs are deleted: it could find the content on disk just before it goes.
            self._not_collecting.clear()
            try:
                await self._none_placing.wait()
                async with self.store.blob_lock(exclusive=True):  # every node's uploads wait
                    hashes = await self.store.delete_unused_blobs()
                    if hashes:
                        # Shielded: once the rows are gone the content must go too, even on
                        # shutdown.
                        unlink = asyncio.to_thread(_unlink_blobs, self.root, hashes)
                        await asyncio.shield(unlink)
            finally:
                self._not_collecting.set()
        if files or hashes:
            log.info("garbage collection: %d files, %d blobs removed", len(files), len(hashes))
        return len(files), len(hashes)

    def _sends_in_progress(self) -> list[str]:
        """Files named by sends begun within SEND_GRACE seconds (older entries are forgotten)."""
        recent = self._loop.time() - SEND_GRACE
        for file_id, (_, began) in list(self._sending.items()):
            if began < recent:
                del self._sending[file_id]
        return list(self._sending)

    async def _begin_placing(self) -> None:
        while not self._not_collecting.is_set():
            await self._not_collecting.wait()
        self._placing += 1
        self._none_placing.clear()

    def _end_placing(self) -> None:
        self._placing -= 1
        if not self._placing:
            self._none_placing.set()

    async def _collect_periodically(self) -> None:
        await asyncio.shield(self._ready)
        while True:
            try:
                await self.collect_garbage()
            except Exception:
                log.exception("garbage collection failed (tried again in %g s)", GC_INTERVAL)
            await asyncio.sleep(GC_INTERVAL)
