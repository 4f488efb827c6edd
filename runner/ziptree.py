"""The tree a ZIP is made of: its entries in archive order, found without following a link out of it.

It reads only names and metadata (lstat); nothing here opens a file's content or writes anything.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass

FILE_ATTR, EXEC_ATTR = (stat.S_IFREG | 0o644) << 16, (stat.S_IFREG | 0o755) << 16
DIR_ATTR = (stat.S_IFDIR | 0o755) << 16 | 0x10  # 0x10: the MS-DOS directory bit
LINK_ATTR = (stat.S_IFLNK | 0o777) << 16
_DRIVE = re.compile(r"[A-Za-z]:")  # a top-level name `C:x` is a path on drive C: to a Windows unzipper


class ArchiveError(Exception):
    """The tree cannot be archived; str() is a user-facing message naming tree-relative paths only."""

    code = "archive_failed"


class ArchiveTooLarge(ArchiveError):
    code = "artifact_too_large"


class ArchiveStopped(ArchiveError):
    code = "cancelled"


@dataclass(frozen=True)
class Entry:
    name: bytes  # UTF-8, '/'-separated, relative; directories end with '/'
    kind: str  # file | dir | link
    path: str = ""  # absolute path on disk (files)
    size: int = 0
    attr: int = FILE_ATTR
    target: bytes = b""  # links: where the link points, relative and inside the tree


@dataclass(frozen=True)
class TreeScan:
    entries: list[Entry]  # in archive order
    size: int  # bytes of the files
    skipped: int  # links out of the tree, special files, unusable names


def scan_tree(root: str | os.PathLike, *, include_git: bool = False, max_bytes: int | None = None,
              on_skip: Callable[[str], None] = lambda message: None) -> TreeScan:
    """The entries of the tree in archive order and their size, walked without following a symlink.

    Raises ArchiveTooLarge as soon as the files' sizes pass `max_bytes` (sparse files count fully: their
    zeros are read and compressed). Skips, reporting each to `on_skip`: symlinks whose target leaves the
    tree, special files, and names that are not UTF-8, hold a backslash (read as a separator on Windows) or
    start with a drive (`C:`).
    """
    real_root = os.path.realpath(root)
    entries: list[Entry] = []
    total = skipped = 0
    folders = [("", real_root)]
    while folders:
        prefix, folder = folders.pop()
        with os.scandir(folder) as listing:
            for item in listing:
                if item.name == ".git" and not include_git:
                    continue
                entry = _entry(item, prefix + item.name, real_root)
                if isinstance(entry, str):
                    skipped += 1
                    on_skip(entry)
                    continue
                entries.append(entry)
                if entry.kind == "dir":
                    folders.append((prefix + item.name + "/", item.path))
                total += entry.size
                if max_bytes is not None and total > max_bytes:
                    raise ArchiveTooLarge(f"the tree is larger than {_human(max_bytes)} "
                                          "(FORGEYARD_MAX_ARTIFACT_BYTES); nothing was written")
    entries.sort(key=lambda entry: entry.name)
    return TreeScan(entries, total, skipped)


def _entry(item: os.DirEntry, relative: str, real_root: str) -> Entry | str:
    """The archive entry of one directory item, or why it is skipped."""
    try:
        name = relative.encode("utf-8")
    except UnicodeEncodeError:
        return f"skipped {relative.encode('utf-8', 'backslashreplace').decode()!r}: the name is not UTF-8"
    if "\\" in item.name:
        return f"skipped {relative!r}: a backslash in a name reads as a folder on Windows"
    if _DRIVE.match(relative):
        return f"skipped {relative!r}: a name starting with a drive letter reads as another drive on Windows"
    info = item.stat(follow_symlinks=False)
    if stat.S_ISDIR(info.st_mode):
        return Entry(name + b"/", "dir", attr=DIR_ATTR)
    if stat.S_ISREG(info.st_mode):
        return Entry(name, "file", item.path, info.st_size, EXEC_ATTR if info.st_mode & 0o111 else FILE_ATTR)
    if not stat.S_ISLNK(info.st_mode):
        return f"skipped {relative!r}: not a regular file, folder or symlink"
    target = _inside_target(item.path, real_root)
    if target is None:
        return f"skipped symlink {relative!r}: it points outside the tree"
    return Entry(name, "link", attr=LINK_ATTR, target=target)


def _inside_target(link: str, real_root: str) -> bytes | None:
    """The link's target relative to its folder if it resolves inside the tree, else None.

    Stored from the resolved path rather than as written: an absolute target inside the tree then still
    works once extracted elsewhere, and the bytes do not depend on where the workspace was.
    """
    resolved = os.path.realpath(link)
    if os.path.commonpath([resolved, real_root]) != real_root:
        return None
    relative = os.path.relpath(resolved, os.path.dirname(link))  # the walk's folders are real paths already
    return relative.replace(os.sep, "/").encode("utf-8", "surrogateescape")


def _human(size: float) -> str:
    units = ["bytes", "KiB", "MiB", "GiB"]
    while size >= 1024 and len(units) > 1:
        size /= 1024
        units.pop(0)
    return f"{size:.4g} {units[0]}"
