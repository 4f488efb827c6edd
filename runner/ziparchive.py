"""The reproducible, parallel ZIP writer of one folder tree; it never follows a symlink or reads outside the tree.

Same tree, same options → same bytes: entries sorted by name bytes, one fixed timestamp, normalised modes,
no extra fields but ZIP64's. Worker threads read and compress, the caller's thread writes in order. Small
files go in batches; a file over BLOCK_SIZE is cut into blocks compressed in parallel as pieces of one deflate
stream (as pigz does), so memory stays bounded whatever the file size. A file whose first 64 KiB do not
deflate by 2 % is not compressed (stored, or deflate's stored blocks). Whole files are deflated by libdeflate
(PyPI `deflate`, ≈ 1.4× zlib-ng at level 6), the blocks of large files and CRC-32 by zlib-ng (PyPI `zlib-ng`),
whose stream can be primed and sync-flushed; both run outside the GIL. The bytes depend on both libraries'
versions (pinned in setup.cfg), never on the run or the thread count.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

import deflate
from zlib_ng import zlib_ng

from runner.ziptree import (
    ArchiveError,
    ArchiveStopped,
    Entry,
    scan_tree,
)

BLOCK_SIZE = 1 << 20  # files larger than this are streamed in blocks of this size
BATCH_SIZE, BATCH_ENTRIES = 256 * 1024, 256  # smaller ones are compressed in batches of about this size
WINDOW = 32 * 1024  # deflate's history: each block is primed with the previous block's last WINDOW bytes
PROBE_SIZE = 64 * 1024  # a larger file is stored when deflating its first PROBE_SIZE bytes saves under 2 %
ZIP64_LIMIT = 0xFFFFFFFF  # sizes and offsets from here on need ZIP64 fields
MAX_ENTRIES = 0xFFFF  # from this many entries on, the ZIP64 end record holds the count
DEFAULT_WORKERS = 2
MIN_TIMESTAMP = 315532800  # 1980-01-01T00:00:00Z, the earliest time a ZIP entry can hold
MAX_TIMESTAMP = 4354819198  # 2107-12-31T23:59:58Z, the latest

STORED, DEFLATED = 0, 8
FLAG_DATA_DESCRIPTOR, FLAG_UTF8 = 0x08, 0x800
VERSION, VERSION_ZIP64 = 20, 45
MADE_BY_UNIX = 3 << 8

_LOCAL = struct.Struct("<4s5H3L2H")
_CENTRAL = struct.Struct("<4s6H3L5H2L")
_END = struct.Struct("<4s4H2LH")
_END64 = struct.Struct("<4sQ2H2L4Q")
_LOCATOR64 = struct.Struct("<4sLQL")
_DESCRIPTOR, _DESCRIPTOR64 = struct.Struct("<4s3L"), struct.Struct("<4sL2Q")
_U16, _U32 = 0xFFFF, 0xFFFFFFFF  # "see the ZIP64 field"
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # a fifo swapped in must not block


@dataclass(frozen=True)
class ArchiveResult:
    size: int
    sha256: str
    entries: int
    tree_bytes: int
    skipped: int


def clamp_timestamp(epoch: int) -> int:
    """`epoch` moved into the range a ZIP entry can hold (1980–2107)."""
    return min(max(int(epoch), MIN_TIMESTAMP), MAX_TIMESTAMP)


def _dos_datetime(epoch: int) -> tuple[int, int]:
    # UTC, not local time: the same archive on every machine.
    t = time.gmtime(clamp_timestamp(epoch))
    return (t.tm_year - 1980) << 9 | t.tm_mon << 5 | t.tm_mday, t.tm_hour << 11 | t.tm_min << 5 | t.tm_sec // 2


# -- compression, in the worker threads -------------------------------------------------------------------


@dataclass(frozen=True)
class _Packed:
    method: int
    crc: int
    size: int  # uncompressed bytes
    data: bytes | bytearray  # as written to the archive (libdeflate gives a bytearray)


def _read_range(fd: int, offset: int, length: int) -> bytes:
    parts, done = [], 0
    while done < length:
        chunk = os.pread(fd, length - done, offset + done)
        if not chunk:
            break
        parts.append(chunk)
        done += len(chunk)
    return b"".join(parts)


def _open_regular(entry: Entry) -> int:
    try:
        fd = os.open(entry.path, _OPEN_FLAGS)
    except OSError as error:  # ELOOP: replaced by a symlink since the walk
        raise _changed(entry) from error
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _changed(entry)
    return fd


def _changed(entry: Entry) -> ArchiveError:
    return ArchiveError(f"{entry.name.decode()!r} changed while it was being archived")


def _incompressible(head: bytes | memoryview, level: int) -> bool:
    """Whether deflating a file's first PROBE_SIZE bytes (`head`) saves under 2 %: as `zip -n` does for known
    suffixes, such a file is stored, not deflated."""
    return len(deflate.deflate_compress(head, level)) * 50 >= len(head) * 49


def _pack_batch(entries: tuple[Entry, ...], level: int) -> list[_Packed]:
    return [_pack_file(entry, level) if entry.kind == "file"
            else _Packed(STORED, zlib_ng.crc32(entry.target), len(entry.target), entry.target)  # folder: b""
            for entry in entries]


def _pack_file(entry: Entry, level: int) -> _Packed:
    """A whole small file, deflated, or stored when deflate does not make it smaller."""
    fd = _open_regular(entry)
    try:
        data = _read_range(fd, 0, entry.size + 1)
    finally:
        os.close(fd)
    if len(data) != entry.size:
        raise _changed(entry)
    crc = zlib_ng.crc32(data)
    if level == 0 or (entry.size > PROBE_SIZE and _incompressible(memoryview(data)[:PROBE_SIZE], level)):
        return _Packed(STORED, crc, entry.size, data)
    packed = deflate.deflate_compress(data, level)  # raw deflate, as a ZIP entry holds it
    return _Packed(DEFLATED, crc, entry.size, packed) if len(packed) < len(data) else _Packed(
        STORED, crc, entry.size, data)


def _pack_block(entry: Entry, fd: int, offset: int, level: int) -> _Packed:
    """One block of a large file as a piece of one deflate stream: primed with the history before it, ended
    byte-aligned by a sync flush (the last one by the end of the stream). Level 0 makes stored deflate blocks."""
    length = min(BLOCK_SIZE, entry.size - offset)
    last = offset + length == entry.size
    history = min(WINDOW, offset) if level else 0
    data = _read_range(fd, offset - history, history + length + (1 if last else 0))
    if len(data) != history + length:  # shorter: the file shrank; longer at the end: it grew
        raise _changed(entry)
    block = memoryview(data)[history:]
    compressor = (zlib_ng.compressobj(level, zlib_ng.DEFLATED, -15, zdict=data[:history]) if history
                  else zlib_ng.compressobj(level, zlib_ng.DEFLATED, -15))
    packed = compressor.compress(block) + compressor.flush(zlib_ng.Z_FINISH if last else zlib_ng.Z_SYNC_FLUSH)
    return _Packed(DEFLATED, zlib_ng.crc32(block), length, packed)


# -- the archive format, in the caller's thread ------------------------------------------------------------


class _HashingWriter:
    def __init__(self, out: BinaryIO) -> None:
        self.out, self.digest, self.offset = out, hashlib.sha256(), 0

    def write(self, data: bytes) -> None:
        self.digest.update(data)
        self.out.write(data)
        self.offset += len(data)


@dataclass
class _Member:
    entry: Entry
    offset: int
    method: int
    flags: int
    crc: int = 0
    size: int = 0
    packed_size: int = 0
    zip64: bool = False  # in the local header (and the data descriptor)


class _ZipWriter:
    def __init__(self, out: BinaryIO, timestamp: int) -> None:
        self.out = _HashingWriter(out)
        self.date, self.time = _dos_datetime(timestamp)
        self.members: list[_Member] = []

    def _begin(self, entry: Entry, method: int, flags: int, crc: int, size: int, packed_size: int,
               zip64: bool) -> _Member:
        flags |= 0 if entry.name.isascii() else FLAG_UTF8
        member = _Member(entry, self.out.offset, method, flags, crc, size, packed_size, zip64)
        self.members.append(member)
        extra, sizes = b"", (packed_size, size)
        if zip64:
            extra, sizes = struct.pack("<2H2Q", 1, 16, size, packed_size), (_U32, _U32)
        self.out.write(_LOCAL.pack(b"PK\x03\x04", VERSION_ZIP64 if zip64 else VERSION, flags, method,
                                   self.time, self.date, crc, *sizes, len(entry.name), len(extra))
                       + entry.name + extra)
        return member

    def add_whole(self, entry: Entry, packed: _Packed) -> None:
        size, packed_size = packed.size, len(packed.data)
        self._begin(entry, packed.method, 0, packed.crc, size, packed_size,
                    zip64=max(size, packed_size) >= ZIP64_LIMIT)
        self.out.write(packed.data)

    def begin_stream(self, entry: Entry) -> _Member:
        """A large file's header: deflated, its CRC and sizes in a data descriptor after the data (flag bit 3).
        Deflate may grow incompressible data a little: 5 % of margin decides ZIP64 before the size is known."""
        return self._begin(entry, DEFLATED, FLAG_DATA_DESCRIPTOR, 0, 0, 0, zip64=entry.size * 1.05 > ZIP64_LIMIT)

    def add_block(self, member: _Member, packed: _Packed) -> None:
        member.crc = zlib_ng.crc32_combine(member.crc, packed.crc, packed.size)
        member.size += packed.size
        member.packed_size += len(packed.data)
        self.out.write(packed.data)

    def end_stream(self, member: _Member) -> None:
        descriptor = _DESCRIPTOR64 if member.zip64 else _DESCRIPTOR
        self.out.write(descriptor.pack(b"PK\x07\x08", member.crc, member.packed_size, member.size))

    def finish(self) -> None:
        start = self.out.offset
        for member in self.members:
            self._central_record(member)
        size, count = self.out.offset - start, len(self.members)
        if count >= MAX_ENTRIES or start >= ZIP64_LIMIT or size >= ZIP64_LIMIT:
            end64 = self.out.offset
            self.out.write(_END64.pack(b"PK\x06\x06", 44, MADE_BY_UNIX | VERSION_ZIP64, VERSION_ZIP64, 0, 0,
                                       count, count, size, start))
            self.out.write(_LOCATOR64.pack(b"PK\x06\x07", 0, end64, 1))
            count, size, start = _U16, _U32, _U32
        self.out.write(_END.pack(b"PK\x05\x06", 0, 0, count, count, size, start, 0))

    def _central_record(self, member: _Member) -> None:
        # ZIP64 fields, in the order the format fixes, for exactly the values that do not fit.
        values = (member.size, member.packed_size, member.offset)
        large = [value for value in values if value >= ZIP64_LIMIT]
        extra = struct.pack(f"<2H{len(large)}Q", 1, 8 * len(large), *large) if large else b""
        size, packed_size, offset = (_U32 if value >= ZIP64_LIMIT else value for value in values)
        version = VERSION_ZIP64 if large else VERSION
        name = member.entry.name
        self.out.write(_CENTRAL.pack(b"PK\x01\x02", MADE_BY_UNIX | version, version, member.flags, member.method,
                                     self.time, self.date, member.crc, packed_size, size, len(name), len(extra),
                                     0, 0, 0, member.entry.attr, offset)
                       + name + extra)


# -- the pipeline ------------------------------------------------------------------------------------------


def write_archive(root: str | os.PathLike, out: BinaryIO, *, level: int = 6, timestamp: int = MIN_TIMESTAMP,
                  include_git: bool = False, max_bytes: int | None = None,
                  on_skip: Callable[[str], None] = lambda message: None,
                  should_stop: Callable[[], bool] = lambda: False,
                  workers: int = DEFAULT_WORKERS) -> ArchiveResult:
    """Write the ZIP of the tree at `root` to `out` (a file opened for binary writing) and describe it.

    `timestamp` (unix seconds) is every entry's time; `should_stop` is polled between items and makes
    it raise ArchiveStopped. Raises ArchiveError subclasses, and OSError when the disk fails.
    """
    scan = scan_tree(root, include_git=include_git, max_bytes=max_bytes, on_skip=on_skip)
    writer = _ZipWriter(out, timestamp)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="zip") as pool:
        pipeline = _Pipeline(writer, pool, level, window=4 * workers)
        try:
            pipeline.run(scan.entries, should_stop)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # before closing the files that blocks read
            for fd in pipeline.open_fds:
                os.close(fd)
    writer.finish()
    return ArchiveResult(writer.out.offset, writer.out.digest.hexdigest(), len(scan.entries), scan.size,
                         scan.skipped)


@dataclass(frozen=True)
class _Item:
    kind: str  # batch | head | block | end
    entries: tuple[Entry, ...]
    future: Future | None = None
    fd: int | None = None  # "end": the large file, closed once its blocks are written


class _Pipeline:
    """Submits work in archive order, keeps at most `window` results in flight, writes each when due."""

    def __init__(self, writer: _ZipWriter, pool: ThreadPoolExecutor, level: int, window: int) -> None:
        self.writer, self.pool, self.level, self.window = writer, pool, level, window
        self.open_fds: set[int] = set()
        self.stream: _Member | None = None  # the large file being written; its blocks come one after another

    def run(self, entries: list[Entry], should_stop: Callable[[], bool]) -> None:
        pending: deque[_Item] = deque()
        in_flight = 0
        for item in self._items(entries):
            pending.append(item)
            in_flight += item.future is not None
            while in_flight > self.window or (pending and pending[0].future is None):
                in_flight -= self._write(pending.popleft())
            if should_stop():
                raise ArchiveStopped("archiving was stopped")
        while pending:
            self._write(pending.popleft())

    def _items(self, entries: list[Entry]) -> Iterator[_Item]:
        for unit in _batches(entries):
            if isinstance(unit, tuple):
                yield _Item("batch", unit, self.pool.submit(_pack_batch, unit, self.level))
                continue
            fd = _open_regular(unit)
            self.open_fds.add(fd)
            # Decided once for the whole member, before its blocks are compressed in parallel.
            level = self.level if self.level and not _incompressible(_read_range(fd, 0, PROBE_SIZE), self.level) else 0
            yield _Item("head", (unit,))
            for offset in range(0, unit.size, BLOCK_SIZE):
                yield _Item("block", (unit,), self.pool.submit(_pack_block, unit, fd, offset, level))
            yield _Item("end", (unit,), fd=fd)

    def _write(self, item: _Item) -> int:
        """Write one item; 1 if it held a future (one more may be submitted), else 0."""
        if item.kind == "batch":
            for entry, packed in zip(item.entries, item.future.result(), strict=True):
                self.writer.add_whole(entry, packed)
        elif item.kind == "head":
            self.stream = self.writer.begin_stream(item.entries[0])
        elif item.kind == "block":
            self.writer.add_block(self.stream, item.future.result())
        else:
            self.writer.end_stream(self.stream)
            self.open_fds.discard(item.fd)
            os.close(item.fd)
        return item.future is not None


def _batches(entries: list[Entry]) -> Iterator[tuple[Entry, ...] | Entry]:
    """The entries in order: files over BLOCK_SIZE alone, runs of the others in batches of about BATCH_SIZE
    bytes, since a future per small file would cost more than compressing it."""
    batch: list[Entry] = []
    size = 0
    for entry in entries:
        if entry.size > BLOCK_SIZE:
            if batch:
                yield tuple(batch)
                batch, size = [], 0
            yield entry
            continue
        batch.append(entry)
        size += entry.size
        if size >= BATCH_SIZE or len(batch) >= BATCH_ENTRIES:
            yield tuple(batch)
            batch, size = [], 0
    if batch:
        yield tuple(batch)
