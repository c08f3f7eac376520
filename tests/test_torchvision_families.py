"""Every torchvision model of every family, at its documented input and with no options,
against torchvision's published metadata for every weights entry (num_params, and _ops:
torchvision's "GFLOPS" are GMACs rounded to 3 decimals), as torchvision's own
test_models.py checks them."""

import json

import pytest
import torchvision
from conftest import assert_clean_error
from conftest import cli as run

import cnnshape
from cnnshape import api
from cnnshape.inspect import render
from cnnshape.inspect.torchvision_models import families, weights_entries

ENTRIES = [
    pytest.param(name, entry, id=f"{name}@{entry.name}")
    for name, family in families().items()
    for entry in weights_entries(name)
]
DETECTION = {name for name, family in families().items() if family == "detection"}

# A two-stage detector's box head runs once per proposal the region proposal network keeps
# after NMS, and its mask or keypoint head once per detection: how many depends on the
# trained weights and on the image torchvision measured with, so random weights cannot
# give its figure. What can be checked exactly is the decomposition: torchvision's figure is
# the rest of the network plus whole proposals through the box head. Its R50 Faster R-CNNs
# (and Mask R-CNN v1, its detections none) kept 1,000 proposals, its MobileNet ones none (a
# score threshold of 0.05 on an image with nothing in it); the others kept detections too.
PROPOSALS_KEPT = {
    "fasterrcnn_resnet50_fpn": 1000,
    "fasterrcnn_resnet50_fpn_v2": 1000,
    "maskrcnn_resnet50_fpn": 1000,
    "fasterrcnn_mobilenet_v3_large_fpn": 0,
    "fasterrcnn_mobilenet_v3_large_320_fpn": 0,
}


def test_every_family_is_there():
    found = set(families().values())
    assert found == {
        "classification",
        "segmentation",
        "detection",
        "video",
        "optical flow",
        "quantized",
    }
    assert len(families()) == len(torchvision.models.list_models())


@pytest.mark.parametrize(("name", "entry"), ENTRIES)
def test_params_equal_the_published_count(name, entry):
    _, model, _ = api.build_for_inspection(f"torchvision:{name}@{entry.name}")
    assert sum(p.numel() for p in model.parameters()) == entry.meta["num_params"]


@pytest.mark.parametrize(("name", "entry"), [p for p in ENTRIES if p.values[0] not in DETECTION])
def test_macs_equal_the_published_ops(name, entry):
    report = cnnshape.show(f"torchvision:{name}@{entry.name}")
    assert report.total_params == entry.meta["num_params"]
    assert report.total_macs / 1e9 == pytest.approx(entry.meta["_ops"], abs=5e-4)


@pytest.mark.slow  # each detector is walked for real on the CPU (NMS reads values): seconds
@pytest.mark.parametrize(("name", "entry"), [p for p in ENTRIES if p.values[0] in DETECTION])
def test_detectors_macs_equal_the_published_ops(name, entry):
    report = cnnshape.show(f"torchvision:{name}@{entry.name}", depth=2)
    assert report.inputs[0]["count"] == 1  # a list of one image
    assert "real tensors" in report.fallback and "random weights keep" in report.fallback
    facts = "\n".join(render.report_view(report).footer)
    assert "Inputs: a list of 1 x [3, " in facts and "for a batch of" not in facts
    published = entry.meta["_ops"]
    rows = {row.name: row for row in report.rows}
    if "roi_heads" not in rows:  # one stage: dense heads before NMS, a count of fixed size
        assert report.total_macs / 1e9 == pytest.approx(published, abs=5e-4)
        return
    rest = report.total_macs - rows["roi_heads"].macs
    box = rows["roi_heads.box_head"].macs + rows["roi_heads.box_predictor"].macs
    proposals = rows["roi_heads.box_head"].output_shape[0]
    assert proposals > 0  # random weights keep some: the per-proposal count is measured
    if name in PROPOSALS_KEPT:
        kept = PROPOSALS_KEPT[name]
        assert (rest + box // proposals * kept) / 1e9 == pytest.approx(published, abs=5e-4)
    else:  # Mask R-CNN v2, Keypoint R-CNN: boxes and detections unknown, the rest below
        assert rest / 1e9 < published


@pytest.mark.parametrize(
    ("name", "input_shapes"),
    [
        ("r3d_18", [[1, 3, 16, 112, 112]]),
        ("s3d", [[1, 3, 16, 224, 224]]),
        ("raft_small", [[1, 3, 512, 512], [1, 3, 512, 512]]),
        ("fcn_resnet50", [[1, 3, 520, 520]]),
        ("vit_b_16", [[1, 3, 224, 224]]),
    ],
)
def test_default_input_is_the_documented_one(name, input_shapes):
    report = cnnshape.show(f"torchvision:{name}")
    assert [i["shape"] for i in report.inputs] == input_shapes


def test_weights_entry_builds_as_those_weights_do():
    # SWAG's end-to-end ViT weights are built for 384x384 images.
    report = cnnshape.show("torchvision:vit_b_16@IMAGENET1K_SWAG_E2E_V1")
    assert report.input_shape == [1, 3, 384, 384]


def test_size_and_batch_shape_every_layout():
    clip = cnnshape.show("torchvision:r3d_18", (64, 64), batch=2)
    assert clip.inputs[0]["shape"] == [2, 3, 16, 64, 64]
    pair = cnnshape.show("torchvision:raft_small", (128, 128))
    assert [i["shape"] for i in pair.inputs] == [[1, 3, 128, 128]] * 2


def test_quantized_models_say_they_are_walked_in_float():
    report = cnnshape.show("torchvision:quantized_resnet18")
    assert "quantize=False" in report.fallback


def test_other_classes_build_the_plain_architecture_offline():
    report = cnnshape.show("torchvision:fcn_resnet50", num_classes=3)
    assert [o["shape"] for o in report.outputs] == [[1, 3, 520, 520]]


def test_unknown_weights_entry_lists_the_known_ones():
    assert_clean_error(run("show", "torchvision:r3d_18@NOPE"), "KINETICS400_V1")
    assert_clean_error(run("show", "torchvision:raft_small", "--classes", "3"), "no classes")


def test_list_names_every_family():
    result = run("list", "--source", "torchvision", "-f", "json")
    models = json.loads(result.stdout)["models"]
    assert {m["family"] for m in models} == set(families().values())
    assert {m["name"] for m in models} == set(torchvision.models.list_models())


def test_a_detector_has_no_size_scan_and_says_why():
    # The scan walks every size on meta tensors; NMS needs values: one Error, no traceback.
    assert_clean_error(
        run("sizes", "torchvision:ssdlite320_mobilenet_v3_large"), "reads its tensors' values"
    )
    result = run("compare", "lenet", "torchvision:ssdlite320_mobilenet_v3_large", "-f", "json")
    assert result.exit_code == 0, result.stderr
    lenet, detector = json.loads(result.stdout)["models"]
    assert lenet["valid_sizes"] and detector["valid_sizes"] is None  # unknown, not "none"
