"""Zipping a build directory for a manual deployment, the same bytes for the same tree.

Owns the archive's shape: files only, relative forward-slash names in sorted order, one fixed
timestamp and normalised permissions, so two CI runs of one build upload identical zips. Files
are streamed into the archive in chunks; nothing is read into memory whole.
"""

from __future__ import annotations

import os
import stat
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# The earliest time a zip entry can carry; any fixed value would do, this one is the convention.
FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)
_CHUNK = 1 << 20


class ArchiveError(Exception):
    """The directory or archive cannot be deployed; the message is one line for a person."""


@dataclass(frozen=True)
class ArchiveInfo:
    path: Path
    files: int
    content_bytes: int
    archive_bytes: int


def collect(root: Path) -> list[tuple[str, Path]]:
    """Every regular file under `root` as (archive name, path), sorted by archive name.

    Symlinked files are followed (a build may link an asset in); symlinked directories are not
    descended, which keeps a link back up the tree from looping.
    """
    if not root.is_dir():
        raise ArchiveError(f"{root}: not a directory")
    found: list[tuple[str, Path]] = []
    for current, _dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(current)
        for name in filenames:
            path = base / name
            try:
                if not stat.S_ISREG(path.stat().st_mode):
                    continue  # sockets, fifos, dangling links: nothing a web host can serve
            except OSError:
                continue
            found.append((path.relative_to(root).as_posix(), path))
    # Sort globally by the archive name so order never depends on the filesystem's listing.
    found.sort(key=lambda item: item[0])
    return found


def _entry(name: str, mode: int, size: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=FIXED_DATE_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    # Keep only "executable or not": owner/umask differences between runners must not show.
    perms = 0o755 if mode & 0o111 else 0o644
    info.external_attr = (stat.S_IFREG | perms) << 16
    info.create_system = 3  # unix, so the permission bits above are honoured when unpacked
    info.file_size = size  # lets zipfile pick zip64 up front for entries over 4 GiB
    return info


def build_zip(
    root: Path, out: Path, *, checkpoint: Callable[[], None] | None = None
) -> ArchiveInfo:
    """Zip every file under `root` into `out` (created or replaced).

    `checkpoint` is called between chunks and may raise to abandon the work: zipping runs in a
    worker thread, and a signal must not have to wait for a large tree to be finished.
    """
    entries = collect(root)
    if not entries:
        raise ArchiveError(f"{root}: no files to deploy")
    content = 0
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for name, path in entries:
            st = path.stat()
            with path.open("rb") as src, zf.open(_entry(name, st.st_mode, st.st_size), "w") as dst:
                while chunk := src.read(_CHUNK):
                    if checkpoint is not None:
                        checkpoint()
                    dst.write(chunk)
                    content += len(chunk)
    return ArchiveInfo(out, len(entries), content, out.stat().st_size)


def check_zip(path: Path) -> ArchiveInfo:
    """A ready archive: it must exist and be a zip; its entries are not rewritten."""
    if not path.is_file():
        raise ArchiveError(f"{path}: no such file")
    if not zipfile.is_zipfile(path):
        raise ArchiveError(f"{path}: not a zip archive")
    with zipfile.ZipFile(path) as zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
    if not infos:
        raise ArchiveError(f"{path}: the archive holds no files")
    return ArchiveInfo(path, len(infos), sum(i.file_size for i in infos), path.stat().st_size)
