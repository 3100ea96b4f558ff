"""Zipping a build directory: same tree, same bytes; relative names; nothing outside the tree."""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import pytest

from monitor.deploy.archive import FIXED_DATE_TIME, ArchiveError, build_zip, check_zip


def make_tree(root: Path) -> Path:
    (root / "assets" / "img").mkdir(parents=True)
    (root / "index.html").write_text("<h1>hi</h1>")
    (root / "assets" / "app.js").write_text("x" * 10_000)
    (root / "assets" / "img" / "logo.svg").write_text("<svg/>")
    (root / ".well-known").mkdir()
    (root / ".well-known" / "security.txt").write_text("contact: me")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o700)
    return root


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_entries_are_relative_sorted_and_include_hidden_files(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "dist")
    info = build_zip(root, tmp_path / "out.zip")

    with zipfile.ZipFile(info.path) as zf:
        names = zf.namelist()
    assert names == sorted(names)
    assert names == [
        ".well-known/security.txt",
        "assets/app.js",
        "assets/img/logo.svg",
        "index.html",
        "run.sh",
    ]
    assert info.files == 5
    assert info.content_bytes == sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def test_same_tree_gives_the_same_bytes_whatever_the_mtimes_and_umask(tmp_path: Path) -> None:
    first = build_zip(make_tree(tmp_path / "a"), tmp_path / "a.zip")
    second_root = make_tree(tmp_path / "b")
    for path in second_root.rglob("*"):
        os.utime(path, (1_000_000_000, 1_000_000_000))
    (second_root / "index.html").chmod(0o600)
    second = build_zip(second_root, tmp_path / "b.zip")

    assert sha(first.path) == sha(second.path)
    with zipfile.ZipFile(first.path) as zf:
        assert {i.date_time for i in zf.infolist()} == {FIXED_DATE_TIME}
        modes = {i.filename: (i.external_attr >> 16) & 0o777 for i in zf.infolist()}
    assert modes["index.html"] == 0o644
    assert modes["run.sh"] == 0o755  # executables stay executable


def test_contents_round_trip(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "dist")
    info = build_zip(root, tmp_path / "out.zip")
    with zipfile.ZipFile(info.path) as zf:
        assert zf.read("assets/app.js") == (root / "assets" / "app.js").read_bytes()
        assert zf.testzip() is None


def test_symlinked_directories_are_not_followed(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "dist")
    outside = tmp_path / "secrets"
    outside.mkdir()
    (outside / "key.pem").write_text("nope")
    (root / "linked").symlink_to(outside, target_is_directory=True)
    (root / "loop").symlink_to(root, target_is_directory=True)
    (root / "alias.html").symlink_to(root / "index.html")

    with zipfile.ZipFile(build_zip(root, tmp_path / "out.zip").path) as zf:
        names = zf.namelist()
    assert not any(n.startswith(("linked/", "loop/")) for n in names)
    assert "alias.html" in names  # a linked file is content, and is included


def test_an_empty_or_missing_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(ArchiveError, match="no files to deploy"):
        build_zip(tmp_path / "empty", tmp_path / "out.zip")
    with pytest.raises(ArchiveError, match="not a directory"):
        build_zip(tmp_path / "missing", tmp_path / "out.zip")


def test_a_ready_zip_is_checked_not_rewritten(tmp_path: Path) -> None:
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("index.html", "hi")
    info = check_zip(good)
    assert (info.files, info.content_bytes, info.archive_bytes) == (1, 2, good.stat().st_size)

    bad = tmp_path / "bad.zip"
    bad.write_text("not a zip")
    with pytest.raises(ArchiveError, match="not a zip archive"):
        check_zip(bad)
    with pytest.raises(ArchiveError, match="no such file"):
        check_zip(tmp_path / "missing.zip")
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w"):
        pass
    with pytest.raises(ArchiveError, match="holds no files"):
        check_zip(empty)


def test_a_checkpoint_that_raises_abandons_the_work_between_chunks(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "dist")
    calls = 0

    def checkpoint() -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise KeyboardInterrupt  # stands in for the cancellation a signal raises

    with pytest.raises(KeyboardInterrupt):
        build_zip(root, tmp_path / "out.zip", checkpoint=checkpoint)
    assert calls == 2
