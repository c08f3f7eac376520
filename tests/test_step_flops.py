"""`cnnshape memory` reports the training step's FLOPs: forward (with the loss), backward and
the optimizer, per module too, equal to FlopCounterMode around a real step on the CPU."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import cli
from torch.utils.flop_counter import FlopCounterMode

from cnnshape.inspect.memory import predict_step
from cnnshape.inspect.walk import walk
from cnnshape.registry import list_specs


def real_step_flops(model, batch, labels, optimizer):
    """FlopCounterMode's totals of the forward with the loss, the backward and the step."""
    counted = []
    for phase in ("forward", "backward", "optimizer"):
        with FlopCounterMode(display=False) as counter:
            if phase == "forward":
                loss = torch.nn.functional.cross_entropy(model(batch), labels)
            elif phase == "backward":
                loss.backward()
            else:
                optimizer.step()
        counted.append(counter.get_total_flops())
    return counted


@pytest.mark.parametrize("spec", list_specs(), ids=lambda s: s.name)
def test_the_predicted_steps_flops_are_flop_counter_modes_around_a_real_step(spec):
    size = min(spec.size, 64) if spec.name != "lenet" else 28
    if spec.name in ("alexnet", "vgg", "vgg-small", "nin"):
        size = 224  # their Linear widths fix the input
    model = spec.build(in_channels=1, num_classes=10)
    shape = (2, 1, size, size)
    step = predict_step(model.to("meta"), shape, optimizer="momentum")
    real = spec.build(in_channels=1, num_classes=10).train()
    optimizer = torch.optim.SGD(real.parameters(), lr=0.1, momentum=0.9)
    batch, labels = torch.rand(shape), torch.randint(0, 10, (2,))
    forward, backward, stepped = real_step_flops(real, batch, labels, optimizer)
    assert (step.forward_flops, step.backward_flops, step.optimizer_flops) == (
        forward,
        backward,
        stepped,
    )
    assert sum(layer.forward for layer in step.layer_flops) == step.forward_flops
    assert sum(layer.backward for layer in step.layer_flops) == step.backward_flops


def test_each_layers_forward_flops_are_the_walks_and_its_backward_twice_them():
    spec = next(s for s in list_specs() if s.name == "lenet")
    model = spec.build().to("meta")
    step = predict_step(model, (4, 1, 28, 28))
    rows = {r.name: r for r in walk(model, (4, 1, 28, 28)).rows}
    per_layer = {layer.name: layer for layer in step.layer_flops}
    for name in ("0", "3", "7", "9", "11"):
        assert per_layer[name].forward == rows[name].flops
    # The first convolution needs no gradient of its input: its backward is its forward once.
    assert per_layer["0"].backward == rows["0"].flops
    assert per_layer["3"].backward == 2 * rows["3"].flops


def test_memory_prints_and_writes_the_steps_flops():
    result = cli("memory", "lenet", "--device", "cpu", "-f", "json")
    assert result.exit_code == 0, result.stderr
    step = json.loads(result.stdout)["step"]
    assert step["flops"] == step["forward_flops"] + step["backward_flops"] + step["optimizer_flops"]
    assert "FLOPs of the step:" in cli("memory", "lenet", "--device", "cpu").stdout
