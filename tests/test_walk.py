"""The walk on users' own networks: counts, no mutation, no allocation, clear failures."""

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import cnnshape
from cnnshape import CnnshapeError
from cnnshape.errors import WalkError
from cnnshape.inspect.walk import walk


class SeedBatchNorm(nn.Module):
    """The book's from-scratch BatchNorm verbatim: plain tensor attributes, moved in forward."""

    def __init__(self, num_features, num_dims):
        super().__init__()
        shape = (1, num_features) if num_dims == 2 else (1, num_features, 1, 1)
        self.gamma = nn.Parameter(torch.ones(shape))
        self.beta = nn.Parameter(torch.zeros(shape))
        self.moving_mean = torch.zeros(shape)
        self.moving_var = torch.ones(shape)

    def forward(self, X):
        if self.moving_mean.device != X.device:
            self.moving_mean = self.moving_mean.to(X.device)
            self.moving_var = self.moving_var.to(X.device)
        from cnnshape.models.batchnorm import batch_norm

        Y, self.moving_mean, self.moving_var = batch_norm(
            X, self.gamma, self.beta, self.moving_mean, self.moving_var, eps=1e-5, momentum=0.9
        )
        return Y


def seed_cell():
    return nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5),
        SeedBatchNorm(6, num_dims=4),
        nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5),
        nn.BatchNorm2d(16),
        nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 120),
        nn.BatchNorm1d(120),
        nn.Sigmoid(),
        nn.Linear(120, 10),
    )


def snapshot(model):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [m.training for m in model.modules()],
        [
            (id(m.moving_mean), m.moving_mean.clone())
            for m in model.modules()
            if isinstance(m, SeedBatchNorm)
        ],
    )


def test_summary_of_a_notebook_cell_leaves_the_model_untouched():
    net = seed_cell()
    net(torch.rand(8, 1, 28, 28))  # a training step's forward: moving statistics now non-trivial
    net.train()
    net[0].eval()  # mixed modes must survive too
    before = snapshot(net)
    report = cnnshape.summary(net, input_size=(1, 1, 28, 28), depth=2)
    after = snapshot(net)
    assert report.output_shape == [1, 10]
    assert before[1] == after[1]
    assert before[0].keys() == after[0].keys()
    assert all(torch.equal(before[0][k], after[0][k]) for k in before[0])
    for (id_before, mean_before), (id_after, mean_after) in zip(before[2], after[2], strict=True):
        assert id_before == id_after and torch.equal(mean_before, mean_after)
        assert not isinstance(net[1].moving_mean, torch._subclasses.FakeTensor)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())
    assert net[1].moving_mean.device.type == "cpu"


def test_batchnorm1d_at_batch_one_works():
    report = cnnshape.summary(seed_cell(), input_size=(1, 1, 28, 28))
    assert report.input_shape[0] == 1


def test_real_and_meta_models_give_the_same_report():
    real = cnnshape.get_model("googlenet")
    a = cnnshape.summary(real, (2, 1, 96, 96), depth=3).to_dict()
    b = cnnshape.show("googlenet", batch=2, depth=3).to_dict()
    a.pop("model"), b.pop("model")
    assert a == b


class FunctionalNet(nn.Module):
    """Functional ops that module hooks cannot see: F.conv2d and a bare matmul."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 1, 3, 3))
        self.proj = nn.Parameter(torch.randn(4 * 6 * 6, 5))
        self.head = nn.Linear(5, 3)

    def forward(self, x):
        x = torch.nn.functional.conv2d(x, self.w)
        x = x.flatten(1) @ self.proj
        return self.head(x)


def test_functional_ops_are_counted_like_flop_counter_mode():
    net = FunctionalNet()
    with FlopCounterMode(display=False) as counter:
        net(torch.randn(2, 1, 8, 8))
    report = cnnshape.summary(net, (2, 1, 8, 8))
    assert report.total_flops == counter.get_total_flops() > 0
    head = next(r for r in report.rows if r.name == "head")
    assert head.flops == 2 * 2 * 5 * 3  # batch 2, 5 -> 3
    assert report.total_flops > head.flops  # the functional conv and matmul were counted


def test_a_huge_input_is_never_allocated():
    # 1 x 1 x 65536 x 65536 floats would be 17 GB for the input alone.
    report = cnnshape.show("nin", (65536, 65536))
    assert report.output_shape == [1, 10]
    assert report.activation_bytes > 17e9  # reported, not allocated


def test_failure_names_the_layer_and_why():
    with pytest.raises(WalkError) as info:
        cnnshape.show("alexnet", (96, 96))
    err = info.value
    assert (err.layer, err.layer_type) == ("14", "Linear")
    assert "6400 input features, not 256" in err.message
    assert "256x1x1" in err.message
    assert "193-224" in err.hint
    assert [r.name for r in err.partial.rows] == [str(i) for i in range(14)]


def test_failure_for_a_kernel_larger_than_its_input():
    with pytest.raises(WalkError) as info:
        cnnshape.show("lenet", (3, 3))
    # 3x3 -> padded 5x5 conv -> 3x3 -> 2x2 average pool -> 1x1 -> the unpadded 5x5 conv fails
    assert (info.value.layer, info.value.layer_type) == ("3", "Conv2d")
    assert "its 5x5 window is larger than the 1x1 input" in info.value.message


def test_failure_for_wrong_channels_on_a_users_model():
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
    with pytest.raises(WalkError) as info:
        cnnshape.summary(net, (1, 1, 16, 16))
    assert "expects 3 input channels, not 1" in info.value.message


@pytest.mark.parametrize("shape", [(1, 1, 0, 28), (1, -1, 28, 28), (), (1, 1, 2.5, 3)])
def test_bad_input_shapes(shape):
    with pytest.raises(CnnshapeError, match="at least 1|is not an input"):
        walk(nn.Identity(), shape)


def test_bad_depth():
    with pytest.raises(CnnshapeError, match="Depth"):
        walk(nn.Identity(), (1, 1, 2, 2), depth=0)


def test_depth_expands_blocks_in_execution_order():
    rows = cnnshape.show("googlenet", depth=3).rows
    inception = [r.name for r in rows if r.name.startswith("2.0.")]
    # execution order of the Inception forward, not registration order
    assert inception == [
        "2.0.p1_1",
        "2.0.p2_1",
        "2.0.p2_2",
        "2.0.p3_1",
        "2.0.p3_2",
        "2.0.p4_1",
        "2.0.p4_2",
    ]
    depth_one = [r.name for r in rows if r.depth == 1]
    assert depth_one == ["0", "1", "2", "3", "4", "5"]


def test_report_prints_as_a_table_and_converts_to_json():
    report = cnnshape.show("lenet")
    text = str(report)
    assert "Conv2d" in text and "61,706" in text
    assert report.to_dict()["total_params"] == 61_706
    # Plain data: its repr is one short line, not a 140-column table.
    assert repr(report).startswith("Report(model='lenet'") and "\n" not in repr(report)
    assert len(repr(report)) < 160
    assert "<table" in report._repr_html_() or "<pre" in report._repr_html_()
