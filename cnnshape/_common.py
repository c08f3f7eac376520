"""What both paths need, and nothing else: device choice, leaving a model as it was,
torchrun's roles, atomic writes, pictures, and numbers for people.

Inspection (``cnnshape.inspect``) and training (``cnnshape.train``) never import each other;
both import this module. It imports torch and matplotlib only inside the functions that
need them, so the CLI can import it for free.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import CnnshapeError

# ---- devices ----------------------------------------------------------------------------------


def resolve_device(name: str) -> str:
    """auto -> cuda:0 when a GPU is visible, else cpu; cuda -> cuda:0; checks cuda:N exists.

    Under torchrun every CUDA choice means this process's own GPU, cuda:LOCAL_RANK (a resumed
    run's recorded cuda:0 included).
    """
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return name
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise CnnshapeError(
                f"--device {name}: this machine has no usable CUDA GPU.",
                "Use --device cpu (or auto, which picks the CPU here).",
            )
        index = os.environ["LOCAL_RANK"] if launched() else name.partition(":")[2] or "0"
        count = torch.cuda.device_count()
        if not index.isdigit() or int(index) >= count:
            raise CnnshapeError(
                f"--device {name}: there is no such GPU ({count} visible).",
                f"Use cuda:0 to cuda:{count - 1}.",
            )
        return f"cuda:{int(index)}"
    raise CnnshapeError(f"Unknown device {name!r}.", "Use auto, cpu, cuda or cuda:N.")


def input_device_and_dtype(model) -> tuple:
    """Where and in what precision a model's inputs must be: those of its first parameter
    (float32 on the CPU for a model without floating parameters)."""
    import torch

    param = next(model.parameters(), None)
    if param is None:
        return torch.device("cpu"), torch.float32
    return param.device, param.dtype if param.is_floating_point() else torch.float32


@contextlib.contextmanager
def left_as_it_was(model) -> Iterator[None]:
    """Restore train/eval flags, buffers and tensor attributes, whatever happens inside.

    A module like the book's from-scratch BatchNorm reassigns its statistics in forward; an
    inspection on meta or fake tensors would leave those behind, so they are put back.
    """
    import torch

    saved = [
        (
            m,
            m.training,
            dict(m._buffers),
            {k: v for k, v in vars(m).items() if isinstance(v, torch.Tensor)},
        )
        for m in model.modules()
    ]
    try:
        yield
    finally:
        for module, training, buffers, tensors in saved:
            module.training = training
            module._buffers.clear()
            module._buffers.update(buffers)
            vars(module).update(tensors)


def default_precision(device: str) -> str:
    """What --precision auto means on ``device``: bf16 autocast on a CUDA GPU that has it
    (and for a CUDA device predicted on a machine without one), fp32 on the CPU."""
    if not device.startswith("cuda"):
        return "fp32"
    import torch

    return "bf16" if not torch.cuda.is_available() or torch.cuda.is_bf16_supported() else "fp32"


# ---- torchrun ---------------------------------------------------------------------------------

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def launched() -> bool:
    """Whether torchrun started this process (it sets RANK, WORLD_SIZE and LOCAL_RANK)."""
    return all(name in os.environ for name in _TORCHRUN_VARS)


def launch_rank() -> int:
    """The rank torchrun gave this process (0 outside torchrun), known before and after the
    process group exists: it decides which process speaks for a run."""
    return int(os.environ["RANK"]) if launched() else 0


# ---- files ------------------------------------------------------------------------------------


def atomic_write(
    path: str | os.PathLike, write: Callable[[Path], None], *, follow_symlinks: bool = True
) -> None:
    """Call ``write(temporary_path)``, then move the result to ``path`` in one step.

    Only a new path or a regular file is ever replaced: a device, a FIFO, a socket or a
    folder at ``path`` is refused (`writable_target`), so ``--plot /dev/full`` is an error,
    not a device turned into a PNG. A symlink to a regular file is followed, as editors do
    (the link stays and its file is replaced), unless ``follow_symlinks`` is false: then a
    symlink is refused too (the cache's entries are its own files, never links).

    The temporary file sits next to the target (same file system, so ``os.replace`` is atomic)
    under a unique name, and is removed whatever happens: a reader sees the old file or the
    new one, never half of one. The file and then its folder are flushed to the disk before
    and after the rename, so a power cut cannot leave a renamed file with missing contents.
    A replaced file keeps its permission bits.
    """
    path = writable_target(path, follow_symlinks=follow_symlinks)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        write(tmp)
        _fsync(tmp)
        with contextlib.suppress(FileNotFoundError):
            shutil.copymode(path, tmp)
        os.replace(tmp, path)
    except BaseException:  # KeyboardInterrupt included: never leave the half-written file
        tmp.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # some file systems cannot flush a folder; the file is
        _fsync(path.parent)


def writable_target(path: str | os.PathLike, *, follow_symlinks: bool = True) -> Path:
    """The file a write to ``path`` would replace: ``path`` itself, or where its symlink
    points. Raises CnnshapeError when that is something other than a regular file or a new
    path; checked before any work, so a command fails before it computes."""
    if not os.fspath(path) or not Path(path).name:
        raise CnnshapeError(f"{os.fspath(path)!r} is not a file name.", "Give a path to a file.")
    path = Path(path)
    try:
        if follow_symlinks and path.is_symlink():
            path = Path(os.path.realpath(path))
        mode = path.lstat().st_mode
    except FileNotFoundError:
        if not path.parent.is_dir():
            raise CnnshapeError(
                f"Cannot write {path}: there is no folder {path.parent}.",
                "Give a path in a folder that exists.",
            ) from None
        return path  # a new path
    except OSError as err:  # a name too long, a part of the path that is a file, ...
        raise CnnshapeError(
            f"Cannot write {path}: {err.strerror or err}.", "Give another path."
        ) from None
    if not stat.S_ISREG(mode):
        raise CnnshapeError(
            f"{path} is {_file_kind(mode)}, not a regular file: cnnshape writes only to a "
            "new path or a regular file.",
            "Give a path to a new or regular file.",
        )
    return path


def _file_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_TEMPORARY_NAME = re.compile(r"\.(?P<name>.+)\.[0-9a-f]{12}\.tmp")


def temporary_target(path: Path) -> str | None:
    """The name of the file whose atomic_write left ``path`` behind (a kill -9 mid-write),
    or None when ``path`` is not one of atomic_write's temporary files."""
    match = _TEMPORARY_NAME.fullmatch(path.name)
    return match["name"] if match else None


# ---- pictures ---------------------------------------------------------------------------------

DPI = 100  # figure sizes are in inches; at this DPI they give the pixel sizes tests check


def new_figure(size: tuple[float, float], ncols: int = 1):
    """A matplotlib figure with an Agg canvas and ``ncols`` axes, not pyplot: no global figure
    state, no GUI backend. matplotlib is imported here, by the commands that draw."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig, list(fig.subplots(1, ncols, squeeze=False)[0])


# ---- numbers for people -----------------------------------------------------------------------


_SI_PREFIXES = (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3))


def human(n: float, unit: str = "") -> str:
    """1234567 -> '1.23 M', or with a unit '1.23 MB' (SI prefixes: K = 10^3, M = 10^6, ...)."""
    for prefix, scale in _SI_PREFIXES:
        if abs(n) >= scale:
            return f"{n / scale:.2f} {prefix}{unit}"
    return f"{n:g} {unit}".rstrip()


def megabytes(n: int) -> str:
    """Always in MB, as torchinfo's "Params size (MB)": the show footer reads alike for a
    LeNet and a VGG."""
    return f"{n / 1e6:.2f} MB"


def byte_size(n: float) -> str:
    """1234567 -> '1.23 MB' (SI: KB = 10^3 bytes, MB = 10^6, GB = 10^9, TB = 10^12)."""
    return human(n, "B")


_BYTE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "pb": 10**15,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
    "pib": 2**50,
}


def parse_bytes(text: str) -> int:
    """'24GB' -> 24 * 10^9; '16GiB' -> 16 * 2^30; '1500000' -> bytes. ValueError says why not."""
    match = re.fullmatch(r"\s*(\d{1,20}(?:\.\d{1,20})?)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in _BYTE_UNITS:
        raise ValueError("give a number of bytes with a unit: 24GB, 16GiB, 512MB")
    size = int(float(match.group(1)) * _BYTE_UNITS[match.group(2).lower()])
    if size < 1:
        raise ValueError("that is no memory at all")
    return size
