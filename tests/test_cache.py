"""The result cache answers repeated questions exactly as a fresh walk would, and never from a
stale or damaged entry."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
from conftest import assert_clean_error, cli

from cnnshape import api
from cnnshape.inspect import cache


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNSHAPE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def entries(cache_dir):
    return sorted(cache_dir.glob("cnnshape-*.json"))


def test_a_cached_answer_is_the_walks(cache_dir):
    fresh = api.show("googlenet", (96, 96), depth=3)
    first = api.show("googlenet", (96, 96), depth=3, cache=True)
    assert len(entries(cache_dir)) == 1
    again = api.show("googlenet", (96, 96), depth=3, cache=True)
    assert fresh.to_dict() == first.to_dict() == again.to_dict()
    assert again.num_weight_layers == fresh.num_weight_layers
    scan = api.valid_sizes("alexnet", cache=True)
    assert api.valid_sizes("alexnet", cache=True) == scan == api.valid_sizes("alexnet")
    compared = [s.to_dict() for s in api.compare(["lenet", "alexnet"], (96, 96), cache=True)]
    assert [s.to_dict() for s in api.compare(["lenet", "alexnet"], (96, 96), cache=True)] == (
        compared
    )


def test_every_request_detail_is_part_of_the_key(cache_dir):
    api.show("resnet18", cache=True)
    assert api.show("resnet18", (64, 64), cache=True).input_shape == [1, 1, 64, 64]
    assert api.show("resnet18", batch=2, cache=True).input_shape == [2, 1, 96, 96]
    assert api.show("resnet18", in_channels=3, cache=True).input_shape == [1, 3, 96, 96]
    assert api.show("resnet18", num_classes=5, cache=True).output_shape == [1, 5]
    assert api.show("resnet18", depth=2, cache=True).depth == 2
    assert len(entries(cache_dir)) == 6


def test_a_changed_source_file_is_a_new_key(tmp_path, monkeypatch):
    package = tmp_path / "cnnshape"
    shutil.copytree(cache._PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(cache, "_PACKAGE", package)
    cache.fingerprint.cache_clear()
    before = cache.fingerprint()
    lenet = package / "models" / "lenet.py"
    lenet.write_text(lenet.read_text().replace("nn.Sigmoid()", "nn.ReLU()"))
    cache.fingerprint.cache_clear()
    try:
        assert cache.fingerprint() != before
    finally:
        monkeypatch.undo()
        cache.fingerprint.cache_clear()


def test_damaged_entries_are_misses_and_get_rewritten(cache_dir):
    expected = api.show("lenet", cache=True).to_dict()
    (entry,) = entries(cache_dir)
    entry.write_text('{"model": "lenet", "rows": [')
    assert api.show("lenet", cache=True).to_dict() == expected
    entry.write_text('{"unexpected": 1}')
    assert api.show("lenet", cache=True).to_dict() == expected
    assert api.show("lenet", cache=True).to_dict() == expected


def test_users_code_measurements_and_failures_are_never_cached(cache_dir, tmp_path):
    net = tmp_path / "net.py"
    net.write_text("from torch import nn\nNet = lambda: nn.Sequential(nn.Conv2d(3, 4, 3))\n")
    api.show(f"{net}:Net", (8, 8), cache=True)
    api.show("lenet", timed=api.TimeSettings("cpu", warmup=0, repeats=1), cache=True)
    with pytest.raises(api.WalkError):
        api.show("alexnet", (96, 96), cache=True)
    assert entries(cache_dir) == []


def test_an_unwritable_cache_is_skipped(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("CNNSHAPE_CACHE_DIR", str(blocker / "cache"))
    assert api.show("lenet", cache=True).total_params == 61_706


def test_no_cache_turns_it_off(cache_dir, monkeypatch):
    monkeypatch.setenv("CNNSHAPE_NO_CACHE", "1")
    api.show("lenet", cache=True)
    assert entries(cache_dir) == []


# ---- the cache touches only its own files ------------------------------------------------------


def snapshot(folder):
    """Every path under ``folder`` with what it is: a file's bytes, a link's target."""
    found = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if path.is_symlink():
            found[key] = ("link", os.readlink(path))
        elif path.is_fifo():
            found[key] = ("fifo",)
        elif path.is_dir():
            found[key] = ("dir",)
        else:
            found[key] = ("file", path.read_bytes())
    return found


def a_users_folder(root):
    """A folder as someone's home looks: folders, files, a FIFO, links, and names that look
    like the cache's (an old version's fingerprint folder, a .json, a cnnshape- prefix)."""
    (root / "projects" / "thesis").mkdir(parents=True)
    (root / "projects" / "thesis" / "draft.tex").write_text("precious")
    (root / "0123456789abcdef01234567").mkdir()  # shaped like a fingerprint folder
    (root / "0123456789abcdef01234567" / "show-0123.json").write_text("{}")
    (root / "notes.json").write_text('{"mine": true}')
    (root / "cnnshape-notes.json").write_text("mine too")
    os.mkfifo(root / "pipe")
    (root / "link").symlink_to(root / "notes.json")
    return snapshot(root)


def test_the_cache_never_removes_or_changes_what_it_did_not_write(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    before = a_users_folder(home)
    monkeypatch.setenv("CNNSHAPE_CACHE_DIR", str(home))
    api.show("lenet", cache=True)  # the first write (here: of a new fingerprint)
    api.valid_sizes("lenet", cache=True)
    monkeypatch.setenv("CNNSHAPE_CACHE_MAX", "1")  # evict everything it can
    api.show("alexnet", cache=True)
    result = cli("cache", "clear")
    assert result.exit_code == 0, result.stderr
    assert snapshot(home) == before


def test_clear_removes_every_entry_and_its_leftover_temporary_files(cache_dir):
    api.show("lenet", cache=True)
    api.valid_sizes("alexnet", cache=True)
    (entry, *_) = entries(cache_dir)
    leftover = entry.with_name(f".{entry.name}.0123456789ab.tmp")  # a kill -9 mid-write
    leftover.write_text("{")
    info = api.cache_info()
    assert (info.entries, info.current) == (2, 2) and info.bytes > 0
    assert api.clear_cache().entries == 2
    assert list(cache_dir.iterdir()) == []
    assert api.cache_info().entries == 0


def test_cache_info_and_clear_from_the_command_line(cache_dir):
    api.show("lenet", cache=True)
    doc = json.loads(cli("cache", "info", "-f", "json").stdout)
    assert doc["directory"] == str(cache_dir) and doc["entries"] == doc["current"] == 1
    assert doc["bytes"] == sum(p.stat().st_size for p in entries(cache_dir))
    assert "Result cache" in cli("cache", "info").stdout
    assert json.loads(cli("cache", "clear", "-f", "json").stdout)["entries"] == 1
    assert entries(cache_dir) == []


def test_the_size_bound_evicts_other_versions_then_the_least_recently_used(cache_dir, monkeypatch):
    def show(batch):  # entries of nearly one size: LeNet at other batch sizes
        api.show("lenet", batch=batch, cache=True)
        return _entry_of(cache_dir, [batch, 1, 28, 28])

    a, b, c = show(1), show(2), show(3)
    other_version = cache_dir / ("cnnshape-" + "f" * 24 + "-show-" + "0" * 32 + ".json")
    other_version.write_text(a.read_text())
    os.utime(other_version, (time.time() + 100,) * 2)  # the newest file of all
    os.utime(a, (1, 1))
    os.utime(b, (2, 2))
    show(1)  # a hit: `a` is now the most recently used of the three
    sizes = [p.stat().st_size for p in entries(cache_dir)]
    bound = 3 * max(sizes) + min(sizes) // 2  # room for three entries, not four
    monkeypatch.setenv("CNNSHAPE_CACHE_MAX", str(bound))
    d = show(4)
    assert set(entries(cache_dir)) == {a, c, d}  # the other version's went first, then b's
    assert sum(p.stat().st_size for p in entries(cache_dir)) <= bound


def _entry_of(cache_dir, input_shape):
    """This version's entry of a show at ``input_shape``."""
    (found,) = [
        p
        for p in cache_dir.glob(f"cnnshape-{cache.fingerprint()}-*.json")
        if json.loads(p.read_text())["input_shape"] == input_shape
    ]
    return found


def test_a_malformed_bound_is_an_error_only_where_it_is_shown(cache_dir, monkeypatch):
    monkeypatch.setenv("CNNSHAPE_CACHE_MAX", "lots")
    assert api.show("lenet", cache=True).total_params == 61_706  # the cache is skipped
    assert_clean_error(cli("cache", "info"), "CNNSHAPE_CACHE_MAX")


# ---- entries are checked before they are trusted -----------------------------------------------


@pytest.mark.parametrize(
    "damage",
    [
        "null",
        "[]",
        '"a string"',
        "{}",
        "NaN",
        "wrong type of a total",
        "wrong type in a row",
        "a row missing a field",
        "an extra field",
        "not UTF-8",
    ],
)
def test_an_entry_that_does_not_validate_is_a_miss_and_is_rewritten(cache_dir, damage):
    expected = api.show("lenet", cache=True).to_dict()
    (entry,) = entries(cache_dir)
    good = json.loads(entry.read_text())
    damaged = json.loads(entry.read_text())
    if damage == "wrong type of a total":
        damaged["total_params"] = "61,706"
    elif damage == "wrong type in a row":
        damaged["rows"][0]["output_shape"] = {"a": 1}
    elif damage == "a row missing a field":
        del damaged["rows"][1]["flops"]
    elif damage == "an extra field":
        damaged["surprise"] = 1
    if damage == "not UTF-8":
        entry.write_bytes(b"\xff\xfe" + entry.read_bytes())
    elif isinstance(damaged, dict) and damaged != good:
        entry.write_text(json.dumps(damaged))
    else:
        entry.write_text(damage)
    assert api.show("lenet", cache=True).to_dict() == expected
    assert json.loads(entry.read_text()) == good  # rewritten by the fresh walk
    result = cli("show", "lenet", "-f", "json")
    assert result.exit_code == 0, result.stderr


def test_a_fifo_in_place_of_an_entry_neither_hangs_nor_is_replaced(cache_dir):
    api.show("lenet", cache=True)
    (entry,) = entries(cache_dir)
    entry.unlink()
    os.mkfifo(entry)
    # In a process of its own: an open() that blocked on the FIFO would hang this test run.
    done = subprocess.run(
        [sys.executable, "-m", "cnnshape", "show", "lenet", "-f", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CNNSHAPE_CACHE_DIR": str(cache_dir)},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["total_params"] == 61_706
    assert entry.is_fifo()


def test_links_and_oversized_files_are_never_read_nor_written_through(cache_dir, tmp_path):
    expected = api.show("lenet", cache=True).to_dict()
    (entry,) = entries(cache_dir)
    forged = json.loads(entry.read_text())
    forged["total_params"] = 1  # valid in every field: only following the link would use it
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps(forged))
    entry.unlink()
    entry.symlink_to(elsewhere)
    assert api.show("lenet", cache=True).to_dict() == expected
    assert json.loads(elsewhere.read_text()) == forged  # the link's target is not replaced
    assert entry.is_symlink()
    entry.unlink()
    entry.symlink_to("/dev/zero")
    assert api.show("lenet", cache=True).to_dict() == expected
    entry.unlink()
    with entry.open("wb") as big:  # sparse: larger than any entry, no disk used
        big.truncate(cache.MAX_ENTRY_BYTES + 1)
    assert api.show("lenet", cache=True).to_dict() == expected


def test_no_cache_flag_neither_reads_nor_writes(cache_dir):
    for command in (["show", "lenet"], ["compare", "lenet"], ["sizes", "lenet"]):
        assert cli(*command, "--no-cache").exit_code == 0
    assert entries(cache_dir) == []
