"""The forward pass as a dataflow graph: module calls and functional ops are the nodes, the
tensors between them the edges.

Module calls are seen by forward hooks. Functional ops (``torch.cat``, ``x + identity``,
``F.relu``, ``flatten``, ``x[:, :3]``) are seen at the torch-function level, as the book
writes them, wherever they run outside a leaf module (a leaf's own ops, Conv2d's
``F.conv2d``, are that module's node). An op becomes a node when it takes a tensor of the
flow (one derived from the inputs) and gives a tensor; metadata queries (``x.shape``,
``x.size(0)``) and ops on parameters alone are not on the path.

Edges follow tensor identity: each tensor of the flow remembers the node that produced it.
An in-place write (``Y += X``, ``relu_``, ``ReLU(inplace=True)``) makes the writer the
producer of that tensor and of everything sharing its storage, so a view written in place
is read back from the writer. A layer that returns the tensor it was given (``nn.Identity``,
``Dropout`` in eval mode) becomes its producer too: the chain goes through it, and a later
reader of the same tensor reads it from there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves
from torch.utils.weak import WeakTensorKeyDictionary

from .report import Shape


@dataclass
class Node:
    """One module call or one functional op, in the order the forward runs them."""

    id: str  # "n0", "n1", ... in execution order: stable between runs
    kind: str  # "module" or "op"
    name: str  # qualified: "3.1" (a module), "3.1.cat" (an op in 3.1's forward)
    type: str  # the module's class ("Inception") or the op's name ("cat")
    parent: Node | None  # the module call whose forward runs this one (None: the model's)
    module: nn.Module | None
    sources: list[tuple[str, Shape]]  # (producer id, shape) of each flow tensor it takes
    flops_at_start: int
    input_shape: Shape | None = None  # its first tensor argument's
    outputs: list[torch.Tensor] = field(default_factory=list, repr=False)
    flops: int = 0
    finished: bool = False

    @property
    def depth(self) -> int:
        return self.name.count(".") + 1

    @property
    def is_leaf_module(self) -> bool:
        return self.module is not None and next(self.module.children(), None) is None


class Capture:
    """While active (``with capture:``), records every module call and functional op of the
    flow; ``flops()`` reads the running count that gives each node its own."""

    def __init__(self, model: nn.Module, flops):
        self.model = model
        self.flops = flops
        self.nodes: list[Node] = []
        self.open: list[Node] = []  # the module calls whose forward is running, innermost last
        self.failed_op: str | None = None  # the op that raised, if one did
        self._qualified = {m: n for n, m in model.named_modules() if n}
        self._producers = WeakTensorKeyDictionary()  # flow tensor -> (sequence, node id)
        self._written = {}  # storage -> (sequence, node id) of its last in-place writer
        self._op_names: dict[str, int] = {}  # how many ops of a name each parent has run
        self._ops = _OpRecorder(self)

    # ---- inputs -----------------------------------------------------------------------------

    def mark_input(self, tensor: torch.Tensor, node_id: str) -> None:
        self._produced(tensor, node_id)

    def source_of(self, tensor: torch.Tensor) -> str | None:
        """The node whose output ``tensor`` is (its last in-place writer, if later)."""
        produced = self._producers.get(tensor)
        written = self._written.get(_storage(tensor))
        if written is not None and (produced is None or written[0] > produced[0]):
            return written[1]
        return produced[1] if produced is not None else None

    # ---- module calls, by hooks -------------------------------------------------------------

    @contextlib.contextmanager
    def hooked(self) -> Iterator[None]:
        handles = []
        try:
            for module in self._qualified:
                handles.append(module.register_forward_pre_hook(self._before, with_kwargs=True))
                handles.append(
                    module.register_forward_hook(self._after, with_kwargs=True, always_call=False)
                )
            with self._ops:
                yield
        finally:
            for handle in handles:
                handle.remove()

    def _before(self, module, args, kwargs):
        first = next((a for a in args if isinstance(a, torch.Tensor)), None)
        node = self._new(
            "module",
            self._qualified[module],
            type(module).__name__,
            (args, kwargs),
            module=module,
        )
        node.input_shape = list(first.shape) if first is not None else None
        self.open.append(node)

    def _after(self, module, args, kwargs, output):
        node = self.open.pop()
        self._finish(node, output)

    # ---- functional ops, at the torch-function level -------------------------------------------

    def recording_ops(self) -> bool:
        """Ops are nodes unless a leaf module runs them (they are that module's own)."""
        return not self.open or not self.open[-1].is_leaf_module

    def flow_tensors(self, values) -> list[torch.Tensor]:
        return [t for t in tree_leaves(values) if isinstance(t, torch.Tensor) and self.knows(t)]

    def knows(self, tensor: torch.Tensor) -> bool:
        return tensor in self._producers or _storage(tensor) in self._written

    def record_op(self, func, args, kwargs, output, flops_at_start: int) -> None:
        parent = self.open[-1] if self.open else None
        op = _op_name(func)
        prefix = f"{parent.name}." if parent is not None else ""
        count = self._op_names.get(prefix + op, 0)
        self._op_names[prefix + op] = count + 1
        name = f"{prefix}{op}" + (f"_{count}" if count else "")
        node = self._new("op", name, op, (args, kwargs), flops_at_start=flops_at_start)
        first = next((t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)), None)
        node.input_shape = list(first.shape) if first is not None else None
        self._finish(node, output)

    # ---- nodes ----------------------------------------------------------------------------------

    def _new(self, kind, name, type_, inputs, *, module=None, flops_at_start=None) -> Node:
        node = Node(
            id=f"n{len(self.nodes)}",
            kind=kind,
            name=name,
            type=type_,
            parent=self.open[-1] if self.open else None,
            module=module,
            sources=[(self.source_of(t), list(t.shape)) for t in self.flow_tensors(inputs)],
            flops_at_start=self.flops() if flops_at_start is None else flops_at_start,
        )
        self.nodes.append(node)
        return node

    def _finish(self, node: Node, output) -> None:
        node.outputs = [t for t in tree_leaves(output) if isinstance(t, torch.Tensor)]
        node.flops = self.flops() - node.flops_at_start
        node.finished = True
        in_place = node.type.endswith("_") or getattr(node.module, "inplace", False) is True
        finest = node.kind == "op" or node.is_leaf_module
        for tensor in node.outputs:
            if not self.knows(tensor):
                self._produced(tensor, node.id)
            elif finest:  # in place, or a tensor passed through (nn.Identity, eval's Dropout)
                self._produced(tensor, node.id, in_place=in_place)
            # A block's output made by a layer or op inside keeps that finer producer: the
            # graph can be drawn at any depth.

    def _produced(self, tensor: torch.Tensor, node_id: str, in_place: bool = False) -> None:
        sequence = len(self.nodes)
        self._producers[tensor] = (sequence, node_id)
        key = _storage(tensor)
        if in_place and key is not None:
            # The tensor is kept: while it lives, no other storage can reuse its key.
            self._written[key] = (sequence, node_id, tensor)


class _OpRecorder(TorchFunctionMode):
    def __init__(self, capture: Capture):
        super().__init__()
        self.capture = capture

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        capture = self.capture
        if not capture.recording_ops() or not capture.flow_tensors((args, kwargs)):
            return func(*args, **kwargs)
        start = capture.flops()
        try:
            output = func(*args, **kwargs)
        except BaseException:
            capture.failed_op = _op_name(func)
            raise
        if any(isinstance(t, torch.Tensor) for t in tree_leaves(output)):
            capture.record_op(func, args, kwargs, output, start)
        return output


_ARITHMETIC = {"add", "sub", "mul", "truediv", "floordiv", "matmul", "pow", "and", "or", "xor"}
_ALIASES = {"truediv": "div", "floordiv": "floor_divide"}


def _op_name(func) -> str:
    """torch.cat -> cat; x + y -> add; x += y -> add_; x[:, :3] -> getitem."""
    name = getattr(func, "__name__", None) or str(func)
    if not (name.startswith("__") and name.endswith("__")):
        return name
    bare = name[2:-2]
    if bare[:1] in ("i", "r") and bare[1:] in _ARITHMETIC:  # x += y; 2 * x
        suffix = "_" if bare[0] == "i" else ""
        return _ALIASES.get(bare[1:], bare[1:]) + suffix
    return _ALIASES.get(bare, bare)


def _storage(tensor: torch.Tensor):
    """A key shared by every view of one storage (None for a tensor without one)."""
    try:
        return tensor.untyped_storage()._cdata
    except (RuntimeError, NotImplementedError, AttributeError):
        return None
