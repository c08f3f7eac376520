"""The result cache answers repeated questions exactly as a fresh walk would, and never from a
stale or damaged entry."""

from __future__ import annotations

import shutil

import pytest

from cnnshape import api
from cnnshape.inspect import cache


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNSHAPE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def entries(cache_dir):
    return sorted(cache_dir.rglob("*.json"))


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
