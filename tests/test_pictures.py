"""show --plot and compare --plot: valid PNG files of the documented pixel size."""

import errno
import os
import struct
import subprocess
import sys

import pytest
from conftest import cli
from matplotlib.figure import Figure

import cnnshape
from cnnshape._common import DPI
from cnnshape.inspect.pictures import COMPARE_SIZE, plotted_rows, report_figure_size


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def pixels(inches):
    return tuple(round(x * DPI) for x in inches)


def test_show_plot_is_a_png_sized_by_its_rows(tmp_path):
    path = tmp_path / "googlenet.png"
    result = cli("show", "googlenet", "--size", "96", "--depth", "2", "--plot", str(path))
    assert result.exit_code == 0, result.stderr
    rows = plotted_rows(cnnshape.show("googlenet", (96, 96), depth=2))
    assert len(rows) == 22
    assert png_size(path) == pytest.approx(pixels(report_figure_size(len(rows))), abs=1)


def test_plotted_rows_add_up_to_the_totals():
    report = cnnshape.show("resnet18", depth=3)
    rows = plotted_rows(report)
    assert len(rows) < len(report.rows)  # the opened blocks give way to their layers
    assert sum(r.params for r in rows) == report.total_params
    assert sum(r.flops for r in rows) == report.total_flops


def test_compare_plot_is_a_png(tmp_path):
    path = tmp_path / "compare.png"
    result = cli(
        "compare", "lenet", "alexnet", "torchvision:resnet18", "--size", "224", "--plot", str(path)
    )
    assert result.exit_code == 0, result.stderr
    assert png_size(path) == pixels(COMPARE_SIZE)


def test_a_picture_path_in_no_folder_is_refused_before_the_walk(tmp_path):
    result = cli("show", "lenet", "--plot", str(tmp_path / "no" / "x.png"))
    assert result.exit_code == 2 and "there is no folder" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_a_disk_that_fails_while_the_picture_is_written_is_a_clean_error(tmp_path, monkeypatch):
    def full_disk(tmp):
        tmp.write_bytes(b"\x89PNG half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Figure, "savefig", lambda self, tmp, **_: full_disk(tmp))
    result = cli("show", "lenet", "--plot", str(tmp_path / "x.png"))
    assert result.exit_code == 1 and "Error: Cannot write the picture" in result.stderr
    assert "No space left on device" in result.stderr
    assert "Hint:" in result.stderr and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # neither the picture nor its temporary file


def test_show_without_plot_does_not_import_matplotlib():
    code = (
        "import sys; from typer.testing import CliRunner; from cnnshape.cli import app; "
        "assert CliRunner().invoke(app, ['show', 'lenet']).exit_code == 0; "
        "assert 'matplotlib' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
