"""cnnshape writes only to a new path or a regular file: never over a device, a FIFO, a
socket or a folder, whichever command writes (--plot, run files, the cache)."""

from __future__ import annotations

import os
import re
import socket
import stat

import pytest
from conftest import assert_clean_error, cli

from cnnshape._common import atomic_write, writable_target
from cnnshape.errors import CnnshapeError


def special_files(tmp_path):
    """(what, path) for every kind of file cnnshape must not replace."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    listening = socket.socket(socket.AF_UNIX)
    listening.bind(str(tmp_path / "sock"))
    folder = tmp_path / "folder"
    folder.mkdir()
    link_to_fifo = tmp_path / "link-to-fifo"
    link_to_fifo.symlink_to(fifo)
    return [
        ("a named pipe (FIFO)", fifo),
        ("a socket", tmp_path / "sock"),
        ("a folder", folder),
        ("a named pipe (FIFO)", link_to_fifo),  # a link is followed, to what it points at
    ]


def kinds(path):
    return stat.S_IFMT(os.lstat(path).st_mode), stat.S_IFMT(os.stat(path).st_mode)


def test_only_new_paths_and_regular_files_are_written(tmp_path):
    for what, path in special_files(tmp_path):
        before = kinds(path)
        with pytest.raises(CnnshapeError, match=re.escape(f"is {what}, not a regular file")):
            atomic_write(path, lambda tmp: tmp.write_text("data"))
        assert kinds(path) == before, path
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "fifo",
        "folder",
        "link-to-fifo",
        "sock",
    ]  # and no temporary file left


def test_a_link_to_a_regular_file_is_followed_as_editors_do(tmp_path):
    target = tmp_path / "real.png"
    target.write_text("old")
    target.chmod(0o640)
    link = tmp_path / "link.png"
    link.symlink_to(target)
    atomic_write(link, lambda tmp: tmp.write_text("new"))
    assert link.is_symlink() and target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640  # a replaced file keeps its mode
    dangling = tmp_path / "dangling.png"
    dangling.symlink_to(tmp_path / "made.png")
    atomic_write(dangling, lambda tmp: tmp.write_text("made"))
    assert (tmp_path / "made.png").read_text() == "made" and dangling.is_symlink()


def test_a_link_is_refused_where_links_are_not_followed(tmp_path):
    target = tmp_path / "someone-elses.json"
    target.write_text("theirs")
    link = tmp_path / "entry.json"
    link.symlink_to(target)
    with pytest.raises(CnnshapeError, match="a symbolic link"):
        atomic_write(link, lambda tmp: tmp.write_text("ours"), follow_symlinks=False)
    assert target.read_text() == "theirs"


@pytest.mark.parametrize("name", ["", ".", "..", "folder/"])
def test_a_path_that_names_no_file_is_refused(tmp_path, name):
    (tmp_path / "folder").mkdir(exist_ok=True)
    with pytest.raises(CnnshapeError):
        writable_target(tmp_path / name if name else name)


@pytest.mark.parametrize("command", [["show", "lenet"], ["compare", "lenet"], ["memory", "lenet"]])
def test_plot_refuses_what_is_not_a_regular_file_before_walking(tmp_path, command):
    folder = tmp_path / "files"
    folder.mkdir()
    for what, path in special_files(folder):
        before = kinds(path)
        result = assert_clean_error(cli(*command, "--plot", path), what)
        assert result.exit_code == 2  # a bad option value: checked before any walk
        assert kinds(path) == before
    assert_clean_error(cli(*command, "--plot", ""), "is not a file name")


def test_plot_through_a_link_writes_the_png_where_it_points(tmp_path):
    target = tmp_path / "layers.png"
    target.write_text("an old picture")
    link = tmp_path / "latest.png"
    link.symlink_to(target)
    result = cli("show", "lenet", "--plot", link)
    assert result.exit_code == 0, result.stderr
    assert link.is_symlink() and target.read_bytes().startswith(b"\x89PNG")
