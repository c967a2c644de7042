"""The four detectors under every option: shapes, value ranges, frozen backbones, checkpoints."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from model.checkpoint import Checkpoint, CheckpointError, RunRecord, checkpoint_bytes
from model.errors import UserError
from model.files import write_file
from model.network import NETWORKS, Detector, build_model, count_parameters, feature_size
from model.options import TrainOptions, not_applying


def model_options(name: str, **values: Any) -> dict[str, Any]:
    """The constructor options TrainOptions gives the network ``name`` (as a checkpoint records them)."""
    if "pretrained" in NETWORKS[name].options():
        values.setdefault("pretrained", False)  # ImageNet weights cannot be downloaded in tests
    return TrainOptions(model=name, **values).network_options


def resnet(**options: Any):
    return build_model("resnet", 3, **options)


OPTION_SETS: list[dict[str, Any]] = [
    {},
    {"box_head": False},
    {"dropout": 0.0},
    {"batchnorm": False},
    {"dropout": 0.0, "batchnorm": False},
    {"pretrained": False, "freeze": False},
    {"pretrained": False, "freeze": True},
]


def cases():
    for name in NETWORKS:
        for options in OPTION_SETS:
            if name == "resnet" and ("batchnorm" in options or "pretrained" not in options):
                continue  # resnet always has BatchNorm; ImageNet weights cannot be downloaded in tests
            if name != "resnet" and "pretrained" in options:
                continue
            yield name, options


@pytest.mark.parametrize("name, options", list(cases()))
def test_forward_shapes_and_ranges(name, options):
    torch.manual_seed(0)
    model = build_model(name, 3, image_size=64, **options)
    images = torch.randn(2, 3, 64, 64)
    for mode in (model.train, model.eval):
        mode()
        logits, boxes = model(images)
        assert logits.shape == (2, 3) and torch.isfinite(logits).all()
        if options.get("box_head", True):
            assert boxes is not None and model.box_regressor is not None
            assert boxes.shape == (2, 4) and (boxes >= 0).all() and (boxes <= 1).all()
            assert isinstance(model.box_regressor[-1], nn.Sigmoid)
            assert not any(isinstance(m, nn.Dropout) for m in model.box_regressor)
        else:
            assert boxes is None and model.box_regressor is None
    has_bn = any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert has_bn == (name == "resnet" or options.get("batchnorm", True))
    dropouts = [m.p for m in model.classifier if isinstance(m, nn.Dropout)]
    assert dropouts == [options.get("dropout", 0.5)] * 2


def test_simple_is_the_course_template_network():
    model = build_model("simple", 3, box_head=False)
    assert count_parameters(model) == (75683, 75683)  # the template's ~75.7k parameters
    assert feature_size(model.features, 224) == 576
    assert [m.out_features for m in model.classifier if isinstance(m, nn.Linear)] == [32, 16, 3]


@pytest.mark.parametrize(
    "name, size, features",
    [("deeper", 224, 512 * 7 * 7), ("vgg", 224, 512 * 7 * 7), ("deeper", 96, 512 * 3 * 3), ("resnet", 128, 512)],
)
def test_feature_sizes_are_measured(name, size, features):
    model = build_model(name, 3, **model_options(name, image_size=size))
    assert model.box_regressor is not None
    assert model.classifier[0].in_features == model.box_regressor[0].in_features == features
    _logits, boxes = model.eval()(torch.zeros(1, 3, size, size))
    assert boxes is not None and boxes.shape == (1, 4)


def test_too_small_image_is_a_clear_error():
    with pytest.raises(UserError, match="image-size 16 is too small"):
        build_model("simple", 3, image_size=16)


def test_frozen_backbone_keeps_weights_and_batchnorm_statistics():
    torch.manual_seed(0)
    model = resnet(pretrained=False, freeze=True, image_size=64)
    before = {k: v.clone() for k, v in model.features.state_dict().items()}
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    assert not model.features.training and model.classifier.training
    for _ in range(2):
        logits, boxes = model(torch.randn(4, 3, 64, 64) * 3 + 1)
        (logits.sum() + boxes.sum()).backward()
        optimizer.step()
    after = model.features.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # running_mean / running_var included
    assert all(not p.requires_grad for p in model.features.parameters())
    total, trainable = count_parameters(model)
    assert trainable < total


def test_fine_tuned_backbone_trains():
    model = resnet(pretrained=False, freeze=False, image_size=64).train()
    batchnorm = next(m for m in model.features.modules() if isinstance(m, nn.BatchNorm2d))
    assert batchnorm.running_mean is not None
    running = batchnorm.running_mean.clone()
    model(torch.randn(4, 3, 64, 64) + 2)
    assert not torch.equal(running, batchnorm.running_mean)
    assert all(p.requires_grad for p in model.parameters())


def test_imagenet_weights_from_a_file(tmp_path):
    from torchvision.models import resnet18

    reference = resnet18()
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    model = resnet(pretrained=True, weights=tmp_path / "resnet18.pth", image_size=64)
    first_conv = next(m for m in model.features.modules() if isinstance(m, nn.Conv2d))
    assert torch.equal(first_conv.weight, reference.conv1.weight)
    (tmp_path / "bad.pth").write_text("not weights")
    with pytest.raises(UserError, match=r"--weights .*bad\.pth: not a loadable weights file"):
        resnet(pretrained=True, weights=tmp_path / "bad.pth")


def test_imagenet_weights_offline_message(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache: the weights must be downloaded
    try:
        resnet(pretrained=True)
    except UserError as error:  # the expected outcome on machines without internet (CI)
        message = str(error)
        assert str(tmp_path) in message and "--weights" in message and "--no-pretrained" in message
        assert "resnet18" in message and "\n" not in message
    else:
        pytest.skip("this machine can download the ImageNet weights")


@pytest.mark.parametrize("name", NETWORKS)
def test_checkpoint_round_trip_gives_identical_outputs(tmp_path, name):
    torch.manual_seed(0)
    options = model_options(name, dropout=0.2, image_size=64)
    model = build_model(name, 3, **options).eval()
    weights: dict[str, Any] = {"pretrained": False} if name == "resnet" else {}
    recorded = TrainOptions(model=name, image_size=64, dropout=0.2, **weights)
    record = RunRecord(name, options, ["a", "b", "c"], 64, recorded.recorded(), {})
    write_file(tmp_path / "m.pth", checkpoint_bytes(record, model, 1, {}))
    raw = torch.load(tmp_path / "m.pth", weights_only=True)  # plain values and tensors only
    assert raw["format"] == "cvpr-practical-detector"
    rebuilt = Checkpoint(tmp_path / "m.pth").build_model()
    images = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(model(images), rebuilt(images)):
            assert torch.equal(a, b)
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_bad_checkpoints_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        Checkpoint(tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match=r"a folder; give a checkpoint in it, e\.g\. .*best\.pth"):
        Checkpoint(tmp_path)
    (tmp_path / "text.pth").write_text("hello")
    with pytest.raises(CheckpointError, match=r"text\.pth: not a checkpoint written by this toolkit"):
        Checkpoint(tmp_path / "text.pth")
    torch.save(build_model("simple", 3).state_dict(), tmp_path / "bare.pth")
    with pytest.raises(CheckpointError, match=r"bare\.pth: not a checkpoint .*bare state dict"):
        Checkpoint(tmp_path / "bare.pth")
    torch.save(build_model("simple", 3), tmp_path / "pickled.pth")  # the template's whole pickled model
    with pytest.raises(CheckpointError, match=r"pickled\.pth: not a checkpoint"):
        Checkpoint(tmp_path / "pickled.pth")
    torch.save({"format": "cvpr-practical-detector", "version": 99}, tmp_path / "new.pth")
    with pytest.raises(CheckpointError, match="newer version"):
        Checkpoint(tmp_path / "new.pth")


def test_a_fifth_network_is_one_class():
    """Defining it registers it: its name, the options it takes, its smallest side and its help follow."""

    class TinyDetector(Detector):
        """Two conv blocks, for the test."""

        name = "tiny"
        min_image_size = 16
        hidden = (8, 8)

        def make_features(self, batchnorm: bool = True) -> nn.Module:
            return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(4), nn.Flatten())

    try:
        assert NETWORKS["tiny"] is TinyDetector and TinyDetector.help() == "Two conv blocks, for the test"
        options = TrainOptions(model="tiny", image_size=16)
        assert not_applying(options, "batchnorm") is None and not_applying(options, "pretrained") == "--model tiny"
        logits, boxes = build_model("tiny", 3, **options.network_options)(torch.zeros(2, 3, 16, 16))
        assert logits.shape == (2, 3) and boxes is not None and boxes.shape == (2, 4)
    finally:
        del NETWORKS["tiny"]
