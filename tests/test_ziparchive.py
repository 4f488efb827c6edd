"""The ZIP writer on real trees: same bytes every time, sorted entries and fixed modes, no way out of the tree."""

from __future__ import annotations

import hashlib
import io
import os
import random
import re
import stat
import subprocess
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from runner import ziparchive, ziptree
from runner.ziparchive import write_archive
from runner.ziptree import ArchiveStopped, ArchiveTooLarge

COMMIT_TIME = 1735787045  # 2025-01-02T03:04:05Z
PASSWD = Path("/etc/passwd")


def make_tree(root: Path) -> Path:
    """A small tree with everything the writer must handle: text, binary, executables, links, odd names."""
    (root / "src/lib").mkdir(parents=True)
    (root / "src/lib/constants.ts").write_text("export const APP_NAME = 'Open WebUI';\n" * 50)
    (root / "src/app.html").write_text("<title>Open WebUI</title>\n")
    (root / "static/static").mkdir(parents=True)
    (root / "static/static/logo.png").write_bytes(random.Random(7).randbytes(200_000))  # incompressible: stored
    (root / "backend").mkdir()
    script = root / "backend/start.sh"
    script.write_text("#!/bin/sh\necho start\n")
    script.chmod(0o775)
    (root / "backend/data.txt").write_text("x")
    (root / "backend/big.log").write_bytes(b"".join(b"%d request served\n" % i for i in range(80_000)))  # streamed
    (root / "backend/data.txt").chmod(0o600)  # normalised to 0644 in the archive
    (root / "empty").mkdir()
    (root / "ünïcode-名前.txt").write_text("utf-8 name\n")
    (root / "a-b.txt").write_text("sorts before a/ by bytes\n")
    (root / ".git").mkdir()
    (root / ".git/config").write_text("[core]\n")
    os.symlink("src/lib/constants.ts", root / "link-inside")
    os.symlink(root / "src/app.html", root / "link-absolute-inside")
    os.symlink("src", root / "link-dir")
    os.symlink(PASSWD, root / "leak")
    os.symlink("../../../../../../../../etc/passwd", root / "src/leak-relative")
    os.symlink("..", root / "up")
    os.mkfifo(root / "fifo")
    (root / "back\\slash.txt").write_text("a backslash name\n")
    (root / os.fsdecode(b"latin1-\xe9.txt")).write_text("not utf-8\n")
    return root


def zip_bytes(root: Path, **options) -> bytes:
    out = io.BytesIO()
    write_archive(root, out, **{"timestamp": COMMIT_TIME, **options})
    return out.getvalue()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "tree")


def test_the_same_tree_gives_the_same_bytes_wherever_and_whenever_it_is(tree, tmp_path):
    first = zip_bytes(tree)
    moved = make_tree(tmp_path / "elsewhere" / "copy")
    for path in moved.rglob("*"):  # other times must not matter
        os.utime(path, (1, 1), follow_symlinks=False)
    assert zip_bytes(tree) == first
    assert zip_bytes(moved) == first
    assert zip_bytes(tree, workers=1) == zip_bytes(tree, workers=3) == first  # threads never change bytes
    assert zip_bytes(tree, timestamp=COMMIT_TIME + 3600) != first


# The sha256 of the known tree's ZIP at level 6, and at level 0 (whose large files are still deflate streams, of
# stored blocks). Deflate is libdeflate's for whole files and zlib-ng's for streamed blocks, both pinned in
# setup.cfg: another version of either, or another deflate, changes these bytes and every artifact's, so that
# must be a deliberate change of these digests, never an upgrade's.
PINNED_SHA256 = {
    6: "8a0f3d2ff10582516ef386e8e7978d6175a308ba6b9c0378b03f75dcfe504c14",
    0: "31327248345d587cccd608f7705087e94f7f6382063d967ffb64a09aad5b98a7",
}


def make_known_tree(root: Path) -> Path:
    """Seeded contents that reach every packing path: whole small files, one large enough to be streamed in
    blocks, incompressible files (stored whole, and as a stored-block stream), an empty file."""
    rng = random.Random(20250102)
    words = [b"const", b"theme", b"export", b"function", b"return", b"webui", b"model", b"chat", b"=", b"{}"]
    (root / "src").mkdir(parents=True)
    for index in range(20):
        line_count = 50 + 40 * index
        text = b"".join(b" ".join(rng.choices(words, k=8)) + b";\n" for _ in range(line_count))
        (root / f"src/module{index:02d}.ts").write_bytes(text)
    (root / "src/bundle.js").write_bytes(b"".join(b" ".join(rng.choices(words, k=12)) + b"\n"
                                                  for _ in range(60_000)))  # ~4 MB: streamed in four blocks
    (root / "static").mkdir()
    (root / "static/logo.png").write_bytes(rng.randbytes(100_000))
    (root / "static/font.woff2").write_bytes(rng.randbytes(ziparchive.BLOCK_SIZE + 1000))
    (root / "static/empty.txt").write_bytes(b"")
    return root


@pytest.mark.parametrize("level", sorted(PINNED_SHA256))
def test_a_known_tree_gives_pinned_bytes(tmp_path, level):
    root = make_known_tree(tmp_path / "known")
    data = zip_bytes(root, level=level)
    assert zipfile.ZipFile(io.BytesIO(data)).testzip() is None
    assert hashlib.sha256(data).hexdigest() == PINNED_SHA256[level]


def test_entries_are_sorted_by_bytes_with_fixed_time_and_normalised_modes(tree):
    archive = zipfile.ZipFile(io.BytesIO(zip_bytes(tree)))
    names = archive.namelist()
    assert [name.encode() for name in names] == sorted(name.encode() for name in names)
    assert names.index("a-b.txt") < names.index("backend/")
    modes = {info.filename: info.external_attr >> 16 for info in archive.infolist()}
    assert modes["backend/start.sh"] == stat.S_IFREG | 0o755
    assert modes["backend/data.txt"] == stat.S_IFREG | 0o644
    assert modes["src/"] == modes["empty/"] == stat.S_IFDIR | 0o755
    assert modes["link-inside"] == stat.S_IFLNK | 0o777
    for info in archive.infolist():
        assert info.date_time == (2025, 1, 2, 3, 4, 4)  # DOS time has 2-second steps
        assert info.create_system == 3 and info.extra == b""  # unix modes, no times or uids in extra fields
    assert archive.getinfo("ünïcode-名前.txt").flag_bits & 0x800
    assert archive.getinfo("static/static/logo.png").compress_type == zipfile.ZIP_STORED
    assert archive.getinfo("src/lib/constants.ts").compress_type == zipfile.ZIP_DEFLATED


def test_timestamps_before_1980_are_clamped(tree):
    archive = zipfile.ZipFile(io.BytesIO(zip_bytes(tree, timestamp=0)))
    assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}


@pytest.mark.security
def test_no_name_leaves_the_archive_and_no_link_leaves_the_tree(tree):
    (tree / "C:drive.txt").write_text("a drive on Windows\n")
    (tree / "src/C:not-a-drive.txt").write_text("only a top-level name starts with a drive\n")
    skipped: list[str] = []
    data = zip_bytes(tree, on_skip=skipped.append)
    archive = zipfile.ZipFile(io.BytesIO(data))
    names = archive.namelist()
    for name in names:  # A03: zip slip
        assert not name.startswith("/") and ".." not in name.split("/") and "\\" not in name
        assert not re.match("[A-Za-z]:", name)
    assert "src/C:not-a-drive.txt" in names
    assert "skipped 'C:drive.txt': a name starting with a drive letter reads as another drive on Windows" in skipped
    assert "leak" not in names and "src/leak-relative" not in names and "up" not in names
    passwd_line = PASSWD.read_bytes().splitlines()[0]
    assert passwd_line not in data  # A01: no passwd content, compressed or not
    for info in archive.infolist():
        assert passwd_line not in archive.read(info)
    assert "skipped symlink 'leak': it points outside the tree" in skipped
    assert "skipped symlink 'src/leak-relative': it points outside the tree" in skipped
    assert "skipped 'fifo': not a regular file, folder or symlink" in skipped
    assert any("back\\\\slash.txt" in message for message in skipped)
    assert any("latin1-" in message and "not UTF-8" in message for message in skipped)


def test_links_inside_the_tree_are_kept_as_relative_links(tree):
    archive = zipfile.ZipFile(io.BytesIO(zip_bytes(tree)))
    assert archive.read("link-inside") == b"src/lib/constants.ts"
    assert archive.read("link-absolute-inside") == b"src/app.html"  # no server path in the archive
    assert archive.read("link-dir") == b"src"
    assert not any(name.startswith("link-dir/") for name in archive.namelist())  # never walked through


def test_unzip_accepts_the_archive_and_extracts_the_tree(tree, tmp_path):
    target = tmp_path / "archive.zip"
    target.write_bytes(zip_bytes(tree))
    assert zipfile.ZipFile(target).testzip() is None
    tested = subprocess.run(["unzip", "-t", str(target)], capture_output=True, text=True)
    assert tested.returncode == 0 and "No errors detected" in tested.stdout, tested.stdout + tested.stderr
    out = tmp_path / "out"
    subprocess.run(["unzip", "-q", str(target), "-d", str(out)], check=True)
    assert (out / "src/lib/constants.ts").read_bytes() == (tree / "src/lib/constants.ts").read_bytes()
    assert (out / "static/static/logo.png").read_bytes() == (tree / "static/static/logo.png").read_bytes()
    assert (out / "backend/big.log").read_bytes() == (tree / "backend/big.log").read_bytes()
    assert os.readlink(out / "link-inside") == "src/lib/constants.ts"
    assert os.access(out / "backend/start.sh", os.X_OK) and (out / "empty").is_dir()


def test_git_folders_only_on_request(tree):
    assert ".git/config" not in zipfile.ZipFile(io.BytesIO(zip_bytes(tree))).namelist()
    with_git = zipfile.ZipFile(io.BytesIO(zip_bytes(tree, include_git=True)))
    assert with_git.read(".git/config") == b"[core]\n"


def test_level_zero_compresses_nothing(tree):
    archive = zipfile.ZipFile(io.BytesIO(zip_bytes(tree, level=0)))
    assert archive.getinfo("src/lib/constants.ts").compress_type == zipfile.ZIP_STORED
    big = archive.getinfo("backend/big.log")  # streamed: deflate's stored blocks, a few bytes per 64 KiB
    assert big.file_size < big.compress_size < big.file_size * 1.001
    assert archive.testzip() is None


def test_large_files_are_streamed_in_blocks_with_bounded_memory(tmp_path):
    root = tmp_path / "big"
    root.mkdir()
    text = b"".join(b"line %d of a compressible source file\n" % i for i in range(40_000))  # ~1.5 MB
    (root / "text.bin").write_bytes(text * 2 + b"tail")  # deflated in 4 blocks
    (root / "exact.bin").write_bytes((text * 2)[:2 * ziparchive.BLOCK_SIZE])  # the last block is a full one
    (root / "random.bin").write_bytes(os.urandom(3 * ziparchive.BLOCK_SIZE + 5))  # not worth compressing
    with open(root / "zeros.bin", "wb") as sparse:
        sparse.truncate(50 * 1024 * 1024)
    target = tmp_path / "big.zip"
    tracemalloc.start()
    try:
        with open(target, "wb") as out:
            result = write_archive(root, out, timestamp=COMMIT_TIME)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 24 * 1024 * 1024, f"peak {peak} bytes for a 56 MB tree"
    archive = zipfile.ZipFile(target)
    assert archive.testzip() is None
    assert archive.read("text.bin") == text * 2 + b"tail"
    assert archive.read("exact.bin") == (root / "exact.bin").read_bytes()
    random_info = archive.getinfo("random.bin")  # deflate's stored blocks: a few bytes per 64 KiB
    assert random_info.file_size < random_info.compress_size < random_info.file_size * 1.001
    assert archive.getinfo("zeros.bin").compress_size < 200_000
    assert result.size == target.stat().st_size
    assert result.sha256 == hashlib.sha256(target.read_bytes()).hexdigest()  # hashed while written
    assert subprocess.run(["unzip", "-tq", str(target)], capture_output=True).returncode == 0


def test_zip64_fields_are_written_where_sizes_offsets_or_counts_need_them(tmp_path, monkeypatch):
    # Real 4 GiB members take minutes to compress and check; the same code paths run with lower limits.
    root = tmp_path / "tree"
    root.mkdir()
    (root / "big.txt").write_bytes(b"0123456789abcdef" * 100_000)  # streamed, deflated: descriptor
    (root / "big-random.bin").write_bytes(os.urandom(ziparchive.BLOCK_SIZE + 10))  # streamed, level 0
    for index in range(5):
        (root / f"small{index}.txt").write_text(f"small {index}\n" * 200)
    monkeypatch.setattr(ziparchive, "ZIP64_LIMIT", 1000)
    monkeypatch.setattr(ziparchive, "MAX_ENTRIES", 3)
    target = tmp_path / "zip64.zip"
    with open(target, "wb") as out:
        write_archive(root, out, timestamp=COMMIT_TIME)
    data = target.read_bytes()
    assert b"PK\x06\x06" in data and b"PK\x06\x07" in data  # ZIP64 end record and locator
    archive = zipfile.ZipFile(target)
    assert len(archive.namelist()) == 7 and archive.testzip() is None
    assert archive.read("big.txt") == (root / "big.txt").read_bytes()
    assert archive.read("big-random.bin") == (root / "big-random.bin").read_bytes()
    assert any(info.extra.startswith(b"\x01\x00") for info in archive.infolist())
    tested = subprocess.run(["unzip", "-t", str(target)], capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr


@pytest.mark.security
def test_a_tree_over_the_limit_is_refused_before_anything_is_written(tmp_path):
    root = tmp_path / "tree"
    root.mkdir()
    with open(root / "sparse.img", "wb") as sparse:  # A11: 10 GiB that take no disk
        sparse.truncate(10 * 1024 ** 3)
    out = io.BytesIO()
    with pytest.raises(ArchiveTooLarge, match=r"the tree is larger than 1 GiB") as raised:
        write_archive(root, out, max_bytes=1024 ** 3)
    assert raised.value.code == "artifact_too_large" and out.getvalue() == b""


def test_stopping_ends_the_archive_with_an_error(tree):
    with pytest.raises(ArchiveStopped):
        write_archive(tree, io.BytesIO(), should_stop=lambda: True)


def test_a_file_that_changes_while_it_is_read_fails_the_archive(tmp_path):
    root = tmp_path / "tree"
    root.mkdir()
    (root / "grows.txt").write_text("short")
    entries = ziptree.scan_tree(root).entries
    (root / "grows.txt").write_text("much longer now")
    with pytest.raises(ziptree.ArchiveError, match="'grows.txt' changed while it was being archived"):
        ziparchive._pack_file(entries[0], 6)
