"""`sizes` against brute force: a real forward at each size on the CPU."""

import pytest
import torch

import cnnshape
from cnnshape.registry import get_spec


def accepts(model, size):
    try:
        with torch.no_grad():
            model(torch.zeros(1, 1, size, size))
        return True
    except RuntimeError:
        return False


@pytest.mark.parametrize("name", ["lenet", "lenet-bn", "lenet-bn-scratch"])
def test_scan_agrees_with_real_forwards_at_every_size(name):
    scan = cnnshape.valid_sizes(name, up_to=48)
    model = get_spec(name).build().eval()
    for size in range(1, 49):
        assert scan.accepts(size) == accepts(model, size), size


def test_alexnet_takes_only_a_narrow_band():
    scan = cnnshape.valid_sizes("alexnet")
    assert scan.valid == [(193, 224)]
    assert scan.checked_up_to == 1024
    model = get_spec("alexnet").build().eval()
    assert [accepts(model, s) for s in (192, 193, 224, 225)] == [False, True, True, False]


def test_lenet_bn_linear_256_takes_28_to_31():
    assert cnnshape.valid_sizes("lenet-bn").valid == [(28, 31)]


def test_fully_convolutional_models_take_everything_from_their_minimum():
    assert cnnshape.valid_sizes("resnet18").valid == [(1, 1024)]
    assert cnnshape.valid_sizes("googlenet", up_to=300).valid == [(1, 300)]
    assert cnnshape.valid_sizes("nin").valid == [(67, 1024)]


def test_every_refused_range_says_which_layer_and_why():
    scan = cnnshape.valid_sizes("alexnet")
    covered = sorted([(lo, hi) for lo, hi in scan.valid] + [(r.lo, r.hi) for r in scan.invalid])
    assert covered[0][0] == 1 and covered[-1][1] == 1024
    assert all(a[1] + 1 == b[0] for a, b in zip(covered, covered[1:], strict=False))
    last = scan.invalid[-1]
    assert (last.lo, last.hi, last.layer) == (225, 1024, "14")
    assert "input features" in last.reason


def test_the_scan_leaves_the_model_untouched():
    model = get_spec("resnet18").build()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cnnshape.scan_sizes(model, up_to=64)
    assert all("forward" not in vars(m) for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.training
