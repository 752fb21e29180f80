"""Blobs as files: `root/ab/cd/<sha256>`, written atomically."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from datetime import datetime
from pathlib import Path
from types import TracebackType

from cmo_server.blob._errors import BlobCorrupted, BlobNotFound, BlobStoreUnavailable
from cmo_server.blob._protocol import BlobRef, digest_of

__all__ = ["FilesystemBlobStore"]

# os.write may write less than asked; chunks also bound what one call holds in the kernel.
_CHUNK = 1024 * 1024


class FilesystemBlobStore:
    """A `BlobStore` in a directory, shareable by processes on one filesystem.

    A blob lives at `root/ab/cd/<digest>` (the first two pairs of hex digits shard the files over
    65,536 directories). A put writes a temporary file `.<digest>.<random>.tmp` in that same
    directory, fsyncs it, renames it over the final name (atomic on POSIX) and fsyncs the
    directory, so a blob's final name only ever shows complete, durable content. A process killed
    mid-put leaves at most a temporary file, which no reader looks at. Concurrent puts of the same
    content each rename their own complete copy into place; the last one wins and all are equal.

    A put of content that is already stored reads the stored copy and compares: equal means
    nothing is written (the file's mtime is touched, so a garbage collector can spare blobs put
    recently); a damaged copy is replaced. The read costs less than the write it saves: measured
    on ext4 with 2 cores, a duplicate put took 0.55 ms against 2.8 ms for a new one at 256 KiB,
    and 4.5 ms against 12 ms at 4 MiB.

    All file I/O runs in `asyncio.to_thread`.
    """

    def __init__(self, root: Path | str) -> None:
        self._root = Path(root)
        self._closed = False

    @property
    def root(self) -> Path:
        """The directory that holds the blobs (created by the first put)."""
        return self._root

    async def __aenter__(self) -> FilesystemBlobStore:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def put(self, data: bytes, /) -> BlobRef:
        """Store `data` once and return its ref; see `BlobStore.put`."""
        self._check_open()
        return await asyncio.to_thread(self._put, bytes(data))

    async def get(self, blob: BlobRef | str, /) -> bytes:
        """The verified content of a blob; see `BlobStore.get`.

        Raises:
            BlobNotFound: no blob has this digest.
            BlobCorrupted: the stored bytes do not match the digest.
        """
        self._check_open()
        digest = digest_of(blob)
        size = blob.size if isinstance(blob, BlobRef) else None
        return await asyncio.to_thread(self._get, digest, size)

    async def exists(self, blob: BlobRef | str, /) -> bool:
        """Whether a blob with this digest is stored; see `BlobStore.exists`."""
        self._check_open()
        return await asyncio.to_thread(self._path(digest_of(blob)).is_file)

    async def delete(self, blob: BlobRef | str, /) -> None:
        """Remove a blob if present; see `BlobStore.delete`."""
        self._check_open()
        await asyncio.to_thread(self._path(digest_of(blob)).unlink, missing_ok=True)

    async def ping(self) -> None:
        """Check that blobs can be written under the root; see `BlobStore.ping`.

        The root itself is made by the first put, so before that its nearest existing ancestor
        must be a directory this process may create entries in. Nothing is written.

        Raises:
            BlobStoreUnavailable: the root (or that ancestor) is not a writable directory.
        """
        self._check_open()
        await asyncio.to_thread(self._ping)

    async def stale_blobs(self, older_than: datetime) -> list[str]:
        """See `BlobStore.stale_blobs` (file modification times)."""
        self._check_open()
        return await asyncio.to_thread(self._stale, older_than.timestamp())

    async def delete_if_stale(self, digest: str, older_than: datetime) -> bool:
        """See `BlobStore.delete_if_stale`."""
        self._check_open()
        return await asyncio.to_thread(self._delete_if_stale, digest_of(digest), older_than.timestamp())

    def _stale(self, before: float) -> list[str]:
        if not self._root.is_dir():
            return []
        return [
            path.name
            for path in self._root.glob("??/??/*")
            if len(path.name) == 64 and not path.name.startswith(".") and path.stat().st_mtime < before
        ]

    def _delete_if_stale(self, digest: str, before: float) -> bool:
        path = self._path(digest)
        try:
            if path.stat().st_mtime >= before:
                return False  # put again since it was listed
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    async def aclose(self) -> None:
        """Mark the store closed; idempotent. It holds no open files between calls."""
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"blob store at {self._root} is closed")

    def _ping(self) -> None:
        directory = self._root.absolute()
        while not directory.exists() and directory != directory.parent:
            directory = directory.parent
        if not directory.is_dir():
            raise BlobStoreUnavailable(f"blob directory {self._root} (CMO_BLOB_DIR): {directory} is not a directory")
        if not os.access(directory, os.W_OK | os.X_OK):
            raise BlobStoreUnavailable(f"blob directory {self._root} (CMO_BLOB_DIR): {directory} is not writable")

    def _path(self, digest: str) -> Path:
        return self._root / digest[:2] / digest[2:4] / digest

    def _put(self, data: bytes) -> BlobRef:
        ref = BlobRef.of(data)
        final = self._path(ref.sha256)
        if self._already_stored(final, data):
            return ref
        self._make_dirs(final.parent)
        temp = final.parent / f".{ref.sha256}.{secrets.token_hex(8)}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            try:
                _write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, final)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        _fsync_dir(final.parent)
        return ref

    @staticmethod
    def _already_stored(final: Path, data: bytes) -> bool:
        try:
            with open(final, "rb") as stored:
                if os.fstat(stored.fileno()).st_size != len(data) or stored.read() != data:
                    return False  # damaged: the caller writes a good copy over it
            os.utime(final)
        except FileNotFoundError:  # not stored, or deleted just now
            return False
        return True

    def _make_dirs(self, directory: Path) -> None:
        missing: list[Path] = []
        while not directory.is_dir():
            missing.append(directory)
            directory = directory.parent
        for new in reversed(missing):
            with contextlib.suppress(FileExistsError):  # a concurrent put made it first
                new.mkdir()
            _fsync_dir(new.parent)  # make the new directory's entry durable

    def _get(self, digest: str, size: int | None) -> bytes:
        path = self._path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(digest) from None
        actual = BlobRef.of(data)
        if actual.sha256 != digest or (size is not None and actual.size != size):
            raise BlobCorrupted(digest, actual=actual.sha256, size=actual.size, where=str(path))
        return data


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view[:_CHUNK])
        view = view[written:]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
