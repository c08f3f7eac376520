"""Predicted peak memory of one training step, without the memory.

``predict_step`` runs the step ``cnnshape train`` runs (``optimizer.zero_grad()``, forward and
``CrossEntropyLoss`` under autocast for bf16/fp16, backward, ``optimizer.step()``) on fake
tensors (``FakeTensorMode``): every op computes its outputs' shapes, dtypes, strides and
devices but no data, so a step costs the same at batch 4096 as at batch 1 and allocates
nothing. A dispatch mode watches every tensor storage the step creates on the device and a
weak reference tells it when the storage is freed; the running total's maximum is the peak.
Two steps run: the first creates the gradients and the optimizer state, the second (the
steady state, what every later step repeats) starts with them and frees last step's
gradients in ``zero_grad``.

What is modelled (it is the real code running, only on fake tensors):
  * every storage an op returns, on the device: activations, what autograd saves, gradients,
    optimizer state and the optimizer's temporaries (for-loop on CPU, foreach on CUDA: the
    implementation torch.optim picks for real tensors on that device), autocast's casts
    (bf16 weight copies are cached for the forward and kept while autograd needs them),
    the kernel choices that depend on the device (dropout keeps a bool mask on CUDA and a
    float one on CPU, ...), parameters, buffers, the input batch and its int64 labels;
  * the backward pass as torch's autograd engine runs it: same node order, saved tensors
    released as soon as their node has run, two gradients of one input summed in place when
    the engine can, gradients stolen (not copied) into ``.grad`` when the layout allows. The
    engine is replayed in Python (``_Backward``): the C++ engine refuses fake CUDA tensors
    on a machine without a GPU, and while a dispatch mode is active (which is how the step
    is watched) it never sums gradients in place, which overstates networks with skip
    connections or branches;
  * one meta-kernel discrepancy, corrected: on CPU, ``native_batch_norm`` keeps its saved
    statistics in float32 for a bf16/fp16 input (the meta kernel says the input's dtype);
  * CUDA only: the caching allocator rounds every block up to a multiple of 512 bytes
    (``max_memory_allocated`` counts those blocks).

What is not modelled (benchmarks/RESULTS.md has the measured sizes, with their machines):
  * scratch memory a kernel allocates and frees inside one op: on the CPU oneDNN's blocked
    copies and per-thread buffers, or im2col's columns; it depends on the CPU's instruction
    set and the thread count, which fake tensors cannot see, so ``ERROR_BOUNDS`` bounds it
    instead (with it left out, the allocator's peak equals the prediction to the byte). On
    CUDA: cuDNN's and cuBLAS's workspaces (cuBLAS keeps its own for the whole process);
  * the CUDA caching allocator beyond the 512-byte rounding: a cached block reused for a
    smaller request is counted whole when the remainder is too small to split (<= 1 MiB),
    and memory *reserved* by the allocator (``nvidia-smi``, OOM decisions) exceeds what is
    allocated by the fragmentation of its segments;
  * the CUDA context and kernels (hundreds of MiB, never counted by
    ``max_memory_allocated`` either) and the CPU heap's own overhead (c10 aligns CPU
    allocations to 64 bytes; allocator-level measurements count requested bytes, as this
    prediction does);
  * what ``cnnshape train`` keeps on the device besides the step: the dataset (Fashion-MNIST
    is 55.44 MB: uint8 images, int64 labels), the per-batch metrics, and the next batch, made
    while the previous one is still referenced (one more input batch, at a moment when no activation
    is alive); ``torch.compile`` is not modelled;
  * Python scalars in CPU arithmetic become 8-byte CPU tensors for the length of one op;
  * cuDNN batch norm's reserve space (taken as zero bytes, as torch's meta kernel does);
  * steps GradScaler skips (fp16: inf/NaN gradients skip the optimizer step, and with it
    the optimizer state's creation): the prediction is the step that trains.

``FakeTensorMode``'s constructor imports ``torch._dynamo`` (about a second, once per process).
"""

from __future__ import annotations

import contextlib
import copy
import heapq
import itertools
import math
import warnings
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from .. import step
from ..step import OPTIMIZERS, PRECISIONS, StepWatch
from .conventions import TORCH

_CUDA_BLOCK = 512  # the CUDA caching allocator's smallest block and rounding unit
_LOSS_LAYER = "(loss)"


# ---- results ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerMemory:
    """What one module's forward left for autograd to keep until backward reaches it."""

    name: str  # qualified module name ("features.0"), or "(loss)" for the loss
    type: str  # module class name
    saved_bytes: int  # storages first saved for backward inside this module (each counted once)


@dataclass(frozen=True)
class LayerFlops:
    """FLOPs one module ran in a training step: its forward and the backward of its ops."""

    name: str  # as LayerMemory's
    type: str
    forward: int
    backward: int


@dataclass(frozen=True)
class StepMemory:
    """Memory of one training step on ``device``, in bytes (as the device's allocator counts).

    ``peak`` is the steady state: the second step and every later one. The first step starts
    without gradients and optimizer state and creates them; its peak is ``first_step_peak``.
    """

    peak: int  # steady-state peak of the step, everything live included
    first_step_peak: int
    peak_phase: str  # where the steady-state peak happens: zero_grad|forward|backward|optimizer
    first_step_peak_phase: str
    parameters: int
    buffers: int  # BatchNorm running statistics and other module buffers
    gradients: int  # the .grad of every parameter, as they are after backward
    # Momentum buffers, Adam's moments and step counts (the counts live on the CPU, so they
    # count only there), fp16's loss scale; 0 for plain SGD.
    optimizer_state: int
    inputs: int  # the batch (float32) and its int64 labels
    # What autograd holds for backward at the end of the forward, parameters and the batch
    # left out (they count as themselves); autocast's bf16/fp16 weight copies are in it.
    saved_activations: int
    backward_transient: int  # highest live bytes during backward minus live at its start
    # What was live at the steady-state peak, by kind: parameters, buffers, inputs,
    # gradients, optimizer state, activations (made by the forward), backward temporaries,
    # optimizer temporaries. Sums to ``peak``.
    at_peak: dict[str, int]
    layers: list[LayerMemory] = field(default_factory=list)  # forward order
    # FLOPs of the step (FlopCounterMode's formulas: FLOPs = 2 x MACs): forward with the
    # loss, backward, optimizer step; and per module, the innermost one that ran each op.
    forward_flops: int = 0
    backward_flops: int = 0
    optimizer_flops: int = 0
    layer_flops: list[LayerFlops] = field(default_factory=list)
    input_shape: tuple[int, ...] = ()
    optimizer: str = "sgd"
    precision: str = "fp32"
    device: str = "cpu"

    @property
    def live_at_step_start(self) -> int:
        """What the steady-state step starts with: all that persists between steps."""
        return self.parameters + self.buffers + self.gradients + self.optimizer_state + self.inputs

    @property
    def flops(self) -> int:
        return self.forward_flops + self.backward_flops + self.optimizer_flops

    def to_dict(self) -> dict:
        values = asdict(self)
        values["input_shape"] = list(self.input_shape)
        values["live_at_step_start"] = self.live_at_step_start
        values["flops"] = self.flops
        return values


# ---- how far the allocator's own peak can be from a prediction ----------------------------------


@dataclass(frozen=True)
class Bound:
    """Where the allocator's peak lies around a prediction on one kind of device: from
    ``below_bytes`` under it to max(``above`` x prediction, ``per_thread_bytes`` x CPU threads)
    over it. ``above`` None: not measured, no range is claimed."""

    above: dict[str, float] | None  # by precision: the fraction of the prediction scratch adds
    per_thread_bytes: int
    below_bytes: int  # what the prediction may exceed it by (Python scalars' 8-byte tensors)
    basis: str  # what the numbers rest on, for the output

    def allocator_range(self, peak: int, precision: str, threads: int) -> tuple[int, int] | None:
        """(lowest, highest) allocator peak this bound allows for a predicted ``peak``."""
        if self.above is None:
            return None
        over = max(math.ceil(self.above[precision] * peak), self.per_thread_bytes * threads)
        return peak - self.below_bytes, peak + over


# On the CPU the prediction is exact at the tensor level (tests/test_memory.py): what it
# leaves out is scratch, which a kernel allocates and frees inside one op, so the allocator's
# peak is the prediction plus the scratch of the one op running at that moment. Which kernel
# runs, and so its scratch, is decided inside the real op by the CPU's instruction set
# (oneDNN's AVX2, AVX-512, AVX-512-BF16 or AMX kernels; im2col where torch has no oneDNN
# kernel for bf16/fp16 on that CPU) and by the thread count: fake tensors cannot know it, so
# it is bounded, not predicted. It has two parts:
#   * copies of the op's operands, which grow with the batch: oneDNN's blocked layouts pad
#     channels to 8 or 16 (2.7x for LeNet's 6), im2col copies the input once per kernel
#     position, bf16 converted to float32 doubles. ``above``: 35% and 100%, where 2 threads
#     measured at most +21% for fp32 (LeNet at batch 256) and +58% for fp16/bf16 (the same
#     on im2col);
#   * per-thread buffers, which grow with the threads: GEMM panels packed to fit a core's L2
#     cache, each thread's own partial weight gradient. ``per_thread_bytes``: 512 KiB, half
#     of a 1 MiB L2, where the most measured is 295 KB a thread (MobileNetV2 at 128 threads:
#     +92% in bf16, +59% in fp32), and 107 KB in all for the bf16 LeNet-BN at batch 8 on an
#     AMX Xeon (+17%).
# Measured (benchmarks/RESULTS.md) on one AMD EPYC with oneDNN held to AVX2, AVX-512 and
# AVX-512-BF16 (ONEDNN_MAX_CPU_ISA), at 1-128 threads; more threads are not measured. CUDA
# (cuDNN and cuBLAS workspaces, the caching allocator's fragmentation) is not measured yet:
# benchmarks/memory_gpu.py is the measurement.
ERROR_BOUNDS: dict[str, Bound] = {
    "cpu": Bound(
        {"fp32": 0.35, "bf16": 1.0, "fp16": 1.0},
        512 * 1024,
        64,
        "measured on x86 AVX2 to AVX-512-BF16 at 1-128 threads, AMX from one report",
    ),
    "cuda": Bound(None, 0, 0, "not measured yet: cuDNN/cuBLAS workspaces and fragmentation"),
}


# ---- the public functions -----------------------------------------------------------------------


def predict_step(
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    optimizer: str = "sgd",
    precision: str = "fp32",
    device: str = "cpu",
    channels_last: bool | None = None,
) -> StepMemory:
    """Peak memory of one training step of ``model`` on a batch of ``input_shape``.

    ``input_shape`` is (batch, channels, height, width) of the float32 batch. ``model`` may
    live on the meta device, on the CPU or anywhere else: only its structure, parameter
    shapes and dtypes are used, and it is left exactly as it was. ``channels_last`` None
    means what ``cnnshape train`` does: on for CUDA, off for CPU.
    """
    steps = _simulate(
        model,
        input_shape,
        optimizer=optimizer,
        precision=precision,
        device=device,
        channels_last=channels_last,
        steps=2,
    )
    return _step_memory(steps, input_shape, optimizer, precision, device)


def batch_law(
    model: nn.Module, input_shape: tuple[int, ...], *, batches: tuple[int, int] = (8, 16), **options
) -> tuple[int, int]:
    """(fixed bytes, bytes per image) of the steady-state peak, from two exact predictions.

    ``input_shape`` is one image's (channels, height, width). The peak is affine in the batch
    size apart from small effects (allocator rounding, per-batch scalars), so
    ``fixed + per_image * batch`` is a good estimate; ``fit_batch`` checks it exactly.
    """
    small, large = batches
    if not 1 <= small < large:
        raise ValueError(f"batches must be two increasing sizes, not {batches}")
    peak_small = predict_step(model, (small, *input_shape), **options).peak
    peak_large = predict_step(model, (large, *input_shape), **options).peak
    per_image = max(0, math.ceil((peak_large - peak_small) / (large - small)))
    return peak_small - per_image * small, per_image


# Torch counts sizes and bytes in int64: no tensor, and no device, holds more bytes than this.
BUDGET_CAP = 2**63 - 1


@dataclass(frozen=True)
class BatchFit:
    """The largest batch under a budget, and whether the budget had to be capped."""

    batch: int  # the largest batch whose exact predicted peak fits; 0 when not even one does
    capped: bool  # the budget was over BUDGET_CAP and searched as BUDGET_CAP: more may fit


def fit_batch(
    model: nn.Module,
    input_shape: tuple[int, ...],
    budget_bytes: int,
    *,
    law: tuple[int, int] | None = None,
    **options,
) -> BatchFit:
    """The largest batch whose exact predicted steady-state peak fits in ``budget_bytes``.

    ``input_shape`` is one image's (channels, height, width). The linear law gives the first
    guess; exact predictions then step away from it (1, 2, 4, ... images) until the answer is
    bracketed, and bisect. A prediction costs the same whatever the batch and the law is nearly
    exact, so this takes a handful of predictions at any budget. A budget over ``BUDGET_CAP``
    is searched as ``BUDGET_CAP`` and the answer says so. ``law``: the `batch_law` when the
    caller has it already.
    """
    capped = budget_bytes > BUDGET_CAP
    budget = min(budget_bytes, BUDGET_CAP)
    peaks: dict[int, int | None] = {}

    def peak_of(batch: int) -> int | None:
        if batch not in peaks:
            peaks[batch] = representable_peak(model, (batch, *input_shape), **options)
        return peaks[batch]

    def fits(batch: int) -> bool:
        peak = peak_of(batch)
        return peak is not None and peak <= budget

    law = law or batch_law(model, input_shape, **options)
    low, high = _bracket(fits, _guess(peak_of, budget, law))
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return BatchFit(low, capped)


def _guess(peak_of, budget: int, law: tuple[int, int]) -> int:
    """The law's batch for ``budget``, then two secant steps on exact peaks: the law's slope,
    from batches 8 and 16, can be a few percent off the slope at millions of images."""
    fixed, per_image = law
    known = (16, fixed + 16 * per_image)  # the law at its larger batch
    # The input alone takes 4 bytes per element of every image, so within an int64 budget
    # every guess (and every probe around it) stays far from int64's limit on a batch size.
    guess = max((budget - fixed) // max(per_image, 1), 1)
    for _ in range(2):
        peak = peak_of(guess)
        if peak is None or guess == known[0] or peak == known[1]:
            break
        slope = (peak - known[1]) / (guess - known[0])
        known, guess = (guess, peak), max(guess + int((budget - peak) / slope), 1)
    return guess


def _bracket(fits, guess: int) -> tuple[int, int]:
    """(low, high) with ``fits(low)`` (0 fits by definition) and not ``fits(high)``, from
    exact steps of 1, 2, 4, ... images away from the guess."""
    step = 1
    if fits(guess):
        low = guess
        while fits(low + step):
            low, step = low + step, step * 2
        return low, low + step
    high = guess
    while high > 1:
        probe = max(high - step, 1)
        if fits(probe):
            return probe, high
        high, step = probe, step * 2
    return 0, 1


def largest_batch(
    model: nn.Module, input_shape: tuple[int, ...], budget_bytes: int, **options
) -> int:
    """`fit_batch`'s batch alone (a budget a device can have is far below the cap)."""
    return fit_batch(model, input_shape, budget_bytes, **options).batch


def representable_peak(model: nn.Module, input_shape: tuple[int, ...], **options) -> int | None:
    """`predict_step`'s peak, or None where one of the step's tensors would hold more than
    int64 bytes: torch refuses to make it, and such a step fits no budget up to the cap."""
    try:
        return predict_step(model, input_shape, **options).peak
    except RuntimeError as err:
        if "Storage size calculation overflowed" not in str(err):  # c10's computeStorageNbytes
            raise
        return None


# ---- one simulated run of several steps ---------------------------------------------------------


@dataclass
class _StepRecord:
    peak: int
    peak_phase: str
    at_peak: dict[str, int]
    live_at_start: int
    live_at_backward: int
    backward_peak: int
    saved_activations: int
    layers: list[LayerMemory]
    flops: _StepFlops


@dataclass
class _Run:
    steps: list[_StepRecord]
    by_kind: dict[str, int]  # what persists after the last step, by kind


def _simulate(
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    optimizer: str,
    precision: str,
    device: str,
    channels_last: bool | None,
    steps: int,
) -> _Run:
    _check(input_shape, optimizer, precision)
    device = torch.device(device)
    if channels_last is None:
        channels_last = device.type == "cuda"
    from torch._subclasses.fake_tensor import FakeTensorMode  # imports torch._dynamo: lazily

    tracker = _StorageTracker(device)
    with FakeTensorMode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. GradScaler's "CUDA is not available"
        twin = _fake_twin(model, device, channels_last)
        batch = torch.empty(input_shape, device=device)
        if channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        labels = torch.empty(input_shape[0], dtype=torch.int64, device=device)
        opt = _make_optimizer(optimizer, twin.parameters(), device)
        scaler = step.make_scaler(precision, device.type)
        loss_fn = nn.CrossEntropyLoss()
        saved = _SavedTensorLog(twin, loss_fn)
        with tracker:
            tracker.adopt(twin.parameters(), "parameters")
            tracker.adopt(twin.buffers(), "buffers")
            tracker.adopt((batch, labels), "inputs")
            records = [
                _one_step(
                    twin, opt, scaler, loss_fn, batch, labels, precision, device, tracker, saved
                )
                for _ in range(steps)
            ]
            _classify_persistent(tracker, twin, opt, scaler)
            by_kind = dict(tracker.by_kind)
    return _Run(records, by_kind)


def _one_step(
    model, opt, scaler, loss_fn, batch, labels, precision, device, tracker, saved
) -> _StepRecord:
    """One step, the one ``cnnshape train``'s loop runs (`step.train_step`), watched."""
    tracker.start_step()
    live_at_start = tracker.live
    model.train()
    watch = _Watch(tracker, saved, lambda: _persistent_storages(model, batch, labels))
    logits, loss = step.train_step(
        model, batch, labels, opt, scaler, loss_fn, precision, device.type, watch=watch
    )
    del logits, loss
    tracker.phase = "between steps"
    _classify_persistent(tracker, model, opt, scaler)
    return _StepRecord(
        tracker.peak,
        tracker.peak_phase,
        dict(tracker.at_peak),
        live_at_start,
        watch.live_at_backward,
        watch.backward_peak,
        watch.saved_activations,
        watch.layers,
        watch.flops,
    )


class _Watch(StepWatch):
    """The predictor's view of a step: each phase's storages (the tracker's phase), what the
    forward saved for backward, every phase's FLOPs, and backward replayed (`_Backward`)."""

    def __init__(
        self,
        tracker: _StorageTracker,
        saved: _SavedTensorLog,
        persistent: Callable[[], set[int]],
    ):
        # ``persistent``: a function, because a forward may replace buffers (the scratch
        # BatchNorm assigns new moving statistics).
        self.tracker, self.saved, self.persistent = tracker, saved, persistent
        self.flops = _StepFlops(saved)
        self.live_at_backward = self.backward_peak = self.saved_activations = 0
        self.layers: list[LayerMemory] = []

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if name == "backward":  # the forward is over: what it left for backward
            self.saved_activations, self.layers = self.saved.summary(
                self.tracker, self.persistent()
            )
            self.live_at_backward = self.tracker.phase_peak = self.tracker.live
        self.tracker.phase = name
        with contextlib.ExitStack() as inside:
            if name == "forward":
                inside.enter_context(self.saved.recording())
            if name != "zero_grad":
                inside.enter_context(self.flops.counting(name))
            yield
        if name == "backward":
            self.backward_peak = self.tracker.phase_peak

    def backward(self, loss: torch.Tensor) -> None:
        _Backward(loss, self.saved, self.tracker, self.flops).run()


def _step_memory(run: _Run, input_shape, optimizer, precision, device) -> StepMemory:
    first, steady = run.steps[0], run.steps[-1]
    kinds = run.by_kind
    return StepMemory(
        peak=steady.peak,
        first_step_peak=first.peak,
        peak_phase=steady.peak_phase,
        first_step_peak_phase=first.peak_phase,
        parameters=kinds.get("parameters", 0),
        buffers=kinds.get("buffers", 0),
        gradients=kinds.get("gradients", 0),
        optimizer_state=kinds.get("optimizer state", 0),
        inputs=kinds.get("inputs", 0),
        saved_activations=steady.saved_activations,
        backward_transient=steady.backward_peak - steady.live_at_backward,
        at_peak={k: v for k, v in steady.at_peak.items() if v},
        layers=steady.layers,
        forward_flops=steady.flops.total["forward"],
        backward_flops=steady.flops.total["backward"],
        optimizer_flops=steady.flops.total["optimizer"],
        layer_flops=steady.flops.per_layer(),
        input_shape=tuple(input_shape),
        optimizer=optimizer,
        precision=precision,
        device=str(device),
    )


def _check(input_shape, optimizer: str, precision: str) -> None:
    if len(input_shape) < 2 or not all(isinstance(d, int) and d > 0 for d in input_shape):
        raise ValueError(
            f"input_shape must be positive integers (batch, channels, ...), "
            f"not {tuple(input_shape)}"
        )
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, not {optimizer!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")


# ---- the fake model, optimizer, autocast and loss scaler ----------------------------------------


def _fake_twin(model: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    """A copy of ``model`` whose parameters and buffers are fake tensors on ``device``.

    The copy shares nothing with ``model`` (deepcopy with every parameter and buffer mapped
    to its fake stand-in first, so no real weight is ever copied), and the step can run,
    record hooks and reassign buffers on it without touching the original. 4-d tensors get
    the channels_last layout when asked, as ``model.to(memory_format=...)`` gives them. Must
    run inside FakeTensorMode.
    """
    stand_ins: dict[int, torch.Tensor] = {}
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        if id(tensor) in stand_ins:
            continue
        if channels_last and tensor.dim() == 4:
            fake = torch.empty(
                tensor.shape, dtype=tensor.dtype, device=device, memory_format=torch.channels_last
            )
        else:
            fake = torch.empty_strided(
                tensor.shape, tensor.stride(), dtype=tensor.dtype, device=device
            )
        if isinstance(tensor, nn.Parameter):
            fake = nn.Parameter(fake, requires_grad=tensor.requires_grad)
        stand_ins[id(tensor)] = fake
    return copy.deepcopy(model, memo=dict(stand_ins))


def _make_optimizer(name: str, params, device: torch.device) -> torch.optim.Optimizer:
    """The optimizer with PyTorch's defaults, running the implementation it runs for real.

    torch.optim picks foreach kernels for real tensors on CUDA and for-loops on CPU
    (``_default_to_fused_or_foreach``), but it never picks foreach for fake tensors (their
    type is not torch.Tensor), so the choice it would make is passed explicitly.
    """
    return step.make_optimizer(name, params, foreach=device.type in _foreach_devices())


def _foreach_devices() -> list[str]:
    try:
        from torch.utils._foreach_utils import _get_foreach_kernels_supported_devices
    except ImportError:  # private API; these are the devices it listed in torch 2.3-2.14
        return ["cuda", "xpu"]
    return _get_foreach_kernels_supported_devices()


# ---- watching storages --------------------------------------------------------------------------


class _StorageTracker(TorchDispatchMode):
    """Live bytes on one device: every storage an op returns, until it is freed.

    Each storage is counted once (views share it), when an op first returns it, under the
    kind of memory it is (the phase that created it, until ``reclassify`` names it better);
    a weak reference to it subtracts it when it dies.
    """

    def __init__(self, device: torch.device):
        super().__init__()
        self.device_type = device.type
        self.entries: dict[int, list] = {}  # storage key -> [weakref, bytes, kind]
        self.by_kind: Counter[str] = Counter()
        self.live = 0
        self.phase = "setup"
        self.peak = 0
        self.peak_phase = "setup"
        self.at_peak: dict[str, int] = {}
        self.phase_peak = 0

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False  # never traced by torch.compile: no dynamo wrapper needed

    def start_step(self) -> None:
        self.peak = self.live
        self.peak_phase = self.phase
        self.at_peak = dict(self.by_kind)

    def adopt(self, tensors, kind: str) -> None:
        for tensor in tensors:
            self.see(tensor, kind)

    def see(self, tensor, kind: str | None = None) -> None:
        if not isinstance(tensor, torch.Tensor) or tensor.device.type != self.device_type:
            return
        storage = tensor.untyped_storage()
        key = storage._cdata
        size = self.block_size(storage.nbytes())
        entry = self.entries.get(key)
        if entry is not None:
            if entry[1] != size:  # resized in place (resize_, out= ops)
                self._add(entry[2], size - entry[1])
                entry[1] = size
            if kind is not None and entry[2] != kind:
                self.reclassify_entry(entry, kind)
            return
        kind = kind or self._kind_of_new()
        self.entries[key] = [weakref.ref(storage, self._freed_callback(key)), size, kind]
        self._add(kind, size)

    def reclassify(self, tensors, kind: str) -> None:
        for tensor in tensors:
            if isinstance(tensor, torch.Tensor) and tensor.device.type == self.device_type:
                entry = self.entries.get(tensor.untyped_storage()._cdata)
                if entry is not None and entry[2] != kind:
                    self.reclassify_entry(entry, kind)

    def reclassify_entry(self, entry, kind: str) -> None:
        self.by_kind[entry[2]] -= entry[1]
        self.by_kind[kind] += entry[1]
        entry[2] = kind

    def block_size(self, nbytes: int) -> int:
        if self.device_type == "cuda" and nbytes:
            return -(-nbytes // _CUDA_BLOCK) * _CUDA_BLOCK
        return nbytes

    def _kind_of_new(self) -> str:
        return {
            "forward": "activations",
            "backward": "backward temporaries",
            "optimizer": "optimizer temporaries",
        }.get(self.phase, "other")

    def _freed_callback(self, key: int):
        def freed(_ref):
            entry = self.entries.pop(key, None)
            if entry is not None:
                self._add(entry[2], -entry[1])

        return freed

    def _add(self, kind: str, size: int) -> None:
        self.by_kind[kind] += size
        self.live += size
        if size > 0:
            self.phase_peak = max(self.phase_peak, self.live)
            if self.live > self.peak:
                self.peak = self.live
                self.peak_phase = self.phase
                self.at_peak = dict(self.by_kind)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            return _scalar_value(func, args)
        out = func(*args, **(kwargs or {}))
        if func is torch.ops.aten.native_batch_norm.default:
            out = _cpu_batch_norm_statistics(args, out)
        for tensor in tree_flatten(out)[0]:
            self.see(tensor)
        return out


def _scalar_value(func, args):
    """``tensor.item()``: the value when fake tensors know it (small constants such as
    Adam's step count), else 0. Only GradScaler asks for an unknown one (``found_inf``),
    and 0 (no inf or NaN found) is the step that trains."""
    from torch._subclasses.fake_tensor import DataDependentOutputException

    try:
        return func(*args)
    except DataDependentOutputException:
        dtype = args[0].dtype
        if dtype == torch.bool:
            return False
        return 0.0 if dtype.is_floating_point else 0


def _cpu_batch_norm_statistics(args, out):
    """native_batch_norm's saved mean and inverse std as the CPU kernel makes them.

    With a bf16/fp16 input and float32 weights (autocast), the CPU kernel keeps them in
    float32; torch's meta kernel gives them the input's dtype (found by comparing with the
    allocator). CUDA's meta kernel already says float32.
    """
    batch, weight = args[0], args[1]
    output, mean, invstd = out
    mixed = (
        weight is not None
        and weight.dtype == torch.float32
        and batch.dtype in (torch.bfloat16, torch.float16)
    )
    if batch.device.type != "cpu" or not mixed or mean.dtype == torch.float32:
        return out
    return (
        output,
        torch.empty_like(mean, dtype=torch.float32),
        torch.empty_like(invstd, dtype=torch.float32),
    )


def _storage_keys(tensors) -> set[int]:
    return {t.untyped_storage()._cdata for t in tensors if isinstance(t, torch.Tensor)}


def _persistent_storages(model: nn.Module, *inputs) -> set[int]:
    return _storage_keys(itertools.chain(model.parameters(), model.buffers(), inputs))


def _classify_persistent(tracker: _StorageTracker, model, opt, scaler) -> None:
    """Name what outlives a step: parameters, buffers, gradients, optimizer state."""
    tracker.reclassify(model.parameters(), "parameters")
    tracker.reclassify(model.buffers(), "buffers")
    tracker.reclassify((p.grad for p in model.parameters()), "gradients")
    state = [v for s in opt.state.values() for v in s.values()]
    state += [getattr(scaler, name, None) for name in ("_scale", "_growth_tracker")]
    tracker.reclassify(state, "optimizer state")


# ---- what autograd saves, by layer --------------------------------------------------------------


class _Saved:
    """One tensor autograd saved: packed into this box so the backward can drop it."""

    __slots__ = ("tensor", "layer", "__weakref__")

    def __init__(self, tensor: torch.Tensor, layer: str):
        self.tensor = tensor
        self.layer = layer


class _SavedTensorLog:
    """Saved-tensor hooks that box every saved tensor and note the module that saved it.

    The boxes let the replayed backward release a node's saved tensors right after the
    node ran, as the engine does; the module stack (forward pre/post hooks on the twin)
    attributes each saved storage to the innermost module running when it was saved.
    """

    def __init__(self, model: nn.Module, loss_fn: nn.Module):
        self.stack: list[str] = []
        self.boxes: list[weakref.ref] = []
        self.probe: list[_Saved] | None = None
        self.types: dict[str, str] = {}
        for name, module in model.named_modules():
            self._hook(module, name or type(model).__name__)
        self._hook(loss_fn, _LOSS_LAYER)

    def _hook(self, module: nn.Module, name: str) -> None:
        self.types[name] = type(module).__name__

        def enter(_module, _args) -> None:
            self.stack.append(name)

        def leave(_module, _args, _output) -> None:  # returns None: the output is kept
            self.stack.pop()

        module.register_forward_pre_hook(enter)
        module.register_forward_hook(leave)

    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        self.boxes = []
        with torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack):
            yield

    def _pack(self, tensor: torch.Tensor) -> _Saved:
        box = _Saved(tensor, self.stack[-1] if self.stack else _LOSS_LAYER)
        self.boxes.append(weakref.ref(box))
        return box

    def _unpack(self, box: _Saved) -> torch.Tensor:
        if self.probe is not None:
            self.probe.append(box)
        return box.tensor

    def boxes_of(self, node) -> list[_Saved]:
        """The boxes a graph node holds (reading its saved tensors unpacks each of them)."""
        self.probe = []
        try:
            for name in dir(node):
                if name.startswith("_saved_"):
                    getattr(node, name)
            return self.probe
        finally:
            self.probe = None

    def summary(self, tracker: _StorageTracker, exclude: set[int]) -> tuple[int, list[LayerMemory]]:
        """(bytes, per-layer list) of the distinct storages autograd holds now.

        Storages in ``exclude`` (parameters, buffers, the batch) are left out: they are
        counted as what they are. Each storage goes to the layer that saved it first.
        """
        per_layer: dict[str, int] = {}
        seen: set[int] = set()
        for box in (ref() for ref in self.boxes):
            if box is None or box.tensor is None:
                continue
            if box.tensor.device.type != tracker.device_type:
                continue
            storage = box.tensor.untyped_storage()
            if storage._cdata in exclude or storage._cdata in seen:
                continue
            seen.add(storage._cdata)
            size = tracker.block_size(storage.nbytes())
            per_layer[box.layer] = per_layer.get(box.layer, 0) + size
        layers = [
            LayerMemory(name, self.types.get(name, ""), size) for name, size in per_layer.items()
        ]
        return sum(per_layer.values()), layers


# ---- the step's FLOPs ---------------------------------------------------------------------------


class _StepFlops:
    """FLOPs of one step by phase and by module, FlopCounterMode's formulas at dispatch.

    A forward op belongs to the innermost module running it (the saved-tensor log's module
    stack). A backward op belongs to the module whose forward made the graph node running
    it: each node is tied to that module when its forward op returns, which only a
    torch-function hook sees (below autograd, at dispatch, outputs have no grad_fn yet). A
    node made inside a composite op (cross-entropy's log_softmax) goes with the node that
    ran before it, its consumer in the same op."""

    def __init__(self, log: _SavedTensorLog):
        self.log = log
        self.total: Counter[str] = Counter()
        self.by_layer: dict[str, Counter[str]] = {}
        self.owners: dict[object, str] = {}  # graph node -> module name
        self.phase = "forward"
        self.backward_layer = _LOSS_LAYER

    @contextlib.contextmanager
    def counting(self, phase: str) -> Iterator[None]:
        self.phase = phase
        with _FlopsAtDispatch(self), _NodeOwners(self) if phase == "forward" else _nothing():
            yield

    def layer(self) -> str:
        if self.phase == "forward":
            return self.log.stack[-1] if self.log.stack else _LOSS_LAYER
        return self.backward_layer if self.phase == "backward" else "(optimizer)"

    def add(self, flops: int) -> None:
        self.total[self.phase] += flops
        self.by_layer.setdefault(self.layer(), Counter())[self.phase] += flops

    def backward_of(self, node) -> None:
        self.backward_layer = self.owners.get(node, self.backward_layer)

    def per_layer(self) -> list[LayerFlops]:
        return [
            LayerFlops(name, self.log.types.get(name, ""), c["forward"], c["backward"])
            for name, c in self.by_layer.items()
            if name != "(optimizer)"
        ]


_nothing = contextlib.nullcontext


class _FlopsAtDispatch(TorchDispatchMode):
    def __init__(self, flops: _StepFlops):
        super().__init__()
        self.flops = flops

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False  # as the walk's counter: no torch._dynamo import for nothing

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        count = TORCH.count(func, args, kwargs, out)
        if count:
            self.flops.add(2 * count)  # the convention counts MACs
        return out


class _NodeOwners(TorchFunctionMode):
    def __init__(self, flops: _StepFlops):
        super().__init__()
        self.flops = flops

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            node = getattr(tensor, "grad_fn", None) if isinstance(tensor, torch.Tensor) else None
            if node is not None and node not in self.flops.owners:
                self.flops.owners[node] = self.flops.layer()
        return out


# ---- the backward pass, as the autograd engine runs it ------------------------------------------


class _Backward:
    """``loss.backward()`` replayed in Python, with the C++ engine's memory behaviour.

    Same order (a ready queue that runs the highest sequence number first; AccumulateGrad
    nodes have the highest), inputs freed when a node returns, the node's saved tensors
    released right after it ran, several gradients for one input summed in place when the
    engine's rule allows it (dense, and nothing else holds the tensor or its storage), and
    AccumulateGrad stealing the gradient into ``.grad`` when nothing else holds it and its
    strides match the parameter's, copying it otherwise.
    """

    def __init__(
        self,
        loss: torch.Tensor,
        saved: _SavedTensorLog,
        tracker: _StorageTracker,
        flops: _StepFlops,
    ):
        self.loss = loss
        self.saved = saved
        self.tracker = tracker
        self.flops = flops
        self.buffers: dict[object, list] = {}  # node -> its input gradients so far
        self.holders: Counter[int] = Counter()  # tensor id -> buffer slots holding it
        self.dependencies: Counter = Counter()  # node -> edges still to deliver to it
        self.saved_by: dict[object, list[_Saved]] = {}
        self.ready: list[tuple] = []  # heap of (-sequence number, arrival, node)
        self.arrivals = itertools.count()

    def run(self) -> None:
        root = self.loss.grad_fn
        if root is None:
            raise ValueError("the loss does not require grad: nothing to backpropagate")
        self.dependencies = self._dependencies(root)
        self.saved_by = {node: self.saved.boxes_of(node) for node in [root, *self.dependencies]}
        # torch.autograd.backward's implicit gradient; Python holds it until backward returns.
        seed = torch.ones_like(self.loss, memory_format=torch.preserve_format)
        self._store(root, 0, seed, 1)
        self._push(root)
        with torch.no_grad():  # the engine runs without grad mode (no create_graph)
            while self.ready:
                self._evaluate(heapq.heappop(self.ready)[2])
        del seed

    def _push(self, node) -> None:
        heapq.heappush(self.ready, (-node._sequence_nr(), next(self.arrivals), node))

    def _evaluate(self, node) -> None:
        """Engine::evaluate_function: run the node, release it, pass its gradients on."""
        grads = self._take(node)
        self.flops.backward_of(node)
        if type(node).__name__ == "AccumulateGrad":
            self._accumulate_grad(node.variable, grads[0])
            return
        if isinstance(node, torch.autograd.function.BackwardCFunction):
            raise NotImplementedError(
                f"custom autograd Function {type(node).__name__}: not supported"
            )
        outputs = node(*grads)
        if not isinstance(outputs, tuple):
            outputs = (outputs,)
        # validate_outputs replaces each gradient in its vector: a gradient reduced to its
        # input's shape, or cast to its dtype, dies before the next one is validated.
        outputs = list(outputs[: len(node.next_functions)])
        for slot, edge in enumerate(node.next_functions[: len(outputs)]):
            outputs[slot] = self._validate(outputs[slot], edge)
        del grads  # the engine's input buffer dies when the call returns
        for box in self.saved_by.pop(node, ()):
            box.tensor = None  # release_variables(): this node's saved tensors go
        for grad, (next_node, slot) in zip(outputs, node.next_functions, strict=False):
            if next_node is None:
                continue
            self._store(next_node, slot, grad, len(next_node._input_metadata))
            self.dependencies[next_node] -= 1
            if self.dependencies[next_node] == 0:
                self._push(next_node)

    @staticmethod
    def _dependencies(root) -> Counter:
        dependencies: Counter = Counter()
        seen, stack = {root}, [root]
        while stack:
            node = stack.pop()
            for next_node, _ in node.next_functions:
                if next_node is not None:
                    dependencies[next_node] += 1
                    if next_node not in seen:
                        seen.add(next_node)
                        stack.append(next_node)
        return dependencies

    def _take(self, node) -> list:
        grads = self.buffers.pop(node)
        for grad in grads:
            if grad is not None:
                self.holders[id(grad)] -= 1
        return grads

    def _store(self, node, slot: int, grad, slots: int) -> None:
        """InputBuffer::add: keep the first gradient, sum the next ones into it."""
        buffer = self.buffers.setdefault(node, [None] * slots)
        if grad is None:
            return
        old = buffer[slot]
        if old is None:
            buffer[slot] = grad
            self.holders[id(grad)] += 1
            return
        self.holders[id(old)] -= 1
        if self._sole_owner(old):
            summed = old.add_(grad)
        else:
            summed = old + grad
        buffer[slot] = summed
        self.holders[id(summed)] += 1

    def _sole_owner(self, tensor: torch.Tensor) -> bool:
        """InputBuffer's test for summing in place: dense, and the engine holds the only
        reference to the tensor and to its storage."""
        # One reference to the storage is the tensor's; the probe adds another.
        return (
            _non_overlapping_and_dense(tensor)
            and self.holders[id(tensor)] == 0
            and torch._C._storage_Use_Count(tensor.untyped_storage()._cdata) == 2
        )

    @staticmethod
    def _validate(grad, edge):
        """validate_outputs: reduce to the input's shape, cast to its dtype and device."""
        next_node, slot = edge
        if grad is None or next_node is None:
            return grad
        metadata = next_node._input_metadata[slot]
        if tuple(grad.shape) != tuple(metadata.shape):
            grad = grad.sum_to_size(metadata.shape)
        if grad.dtype != metadata.dtype or grad.device != metadata.device:
            grad = grad.to(device=metadata.device, dtype=metadata.dtype)
        return grad

    def _accumulate_grad(self, param: torch.Tensor, grad) -> None:
        """AccumulateGrad: steal the gradient into .grad when allowed, else copy or add."""
        if grad is None:
            return
        if param.grad is not None:
            param.grad.add_(grad)
        elif self.holders[id(grad)] == 0 and _obeys_layout_contract(grad, param):
            param.grad = grad.detach()
        elif _non_overlapping_and_dense(param):
            param.grad = grad.new_empty_strided(param.shape, param.stride()).copy_(grad)
        else:
            param.grad = grad.clone(memory_format=torch.contiguous_format)
        self.tracker.reclassify([param.grad], "gradients")


def _non_overlapping_and_dense(tensor: torch.Tensor) -> bool:
    """c10's is_non_overlapping_and_dense: the elements tile their storage without gaps."""
    expected = 1
    for dim in sorted(range(tensor.dim()), key=lambda d: (tensor.stride(d), tensor.size(d))):
        if tensor.size(dim) == 1:
            continue
        if tensor.stride(dim) != expected:
            return False
        expected *= tensor.size(dim)
    return True


def _obeys_layout_contract(grad: torch.Tensor, param: torch.Tensor) -> bool:
    """autograd's "gradient layout contract": may ``grad`` become ``param.grad`` as it is?"""
    if not _non_overlapping_and_dense(param):
        return grad.is_contiguous()
    for size, grad_stride, param_stride in zip(
        grad.shape, grad.stride(), param.stride(), strict=True
    ):
        if size != 1 and grad_stride != param_stride:
            return False
        if size == 1 and grad_stride == 0:
            return False
    return True
