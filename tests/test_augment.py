"""Box-aware augmentation: boxes move exactly with the pixels, stay valid, and runs stay reproducible."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from model import config, demo_images
from model.augment import POLICIES, Augmenter, Draw, Policy, blur, recolour, to_pixels, warp

from conftest import history

SIZE = 128
MEAN, STD = config.IMAGENET_MEAN, config.IMAGENET_STD
RAW = ((0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255))  # a normalisation that changes nothing
FINE = 4  # masks at 4 x 128 px


def demo_batch(count: int = 18) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Demo images (B, 3, S, S) uint8, their object masks at FINE times the resolution (B, 1, FS, FS)
    and the masks' tight boxes in [0, 1]. The finer masks let the test see where the object's edge
    goes to a fraction of a network pixel (a mask at the network's size loses thin parts when zoomed out)."""
    images, masks, boxes = [], [], []
    for i in range(count):
        sample = demo_images.render(demo_images.CLASSES[i % 3], 9, i)
        rgb = cv2.cvtColor(sample.image, cv2.COLOR_BGR2RGB)
        images.append(torch.from_numpy(cv2.resize(rgb, (SIZE, SIZE), interpolation=cv2.INTER_AREA)).permute(2, 0, 1))
        fine = SIZE * FINE
        mask = torch.from_numpy(cv2.resize(sample.mask, (fine, fine), interpolation=cv2.INTER_NEAREST)).float()
        masks.append(mask[None])
        boxes.append(tight_box(mask) / fine)
    return torch.stack(images), torch.stack(masks), torch.stack(boxes)


def tight_box(mask: torch.Tensor) -> torch.Tensor:
    """The pixel box (x1, y1, x2, y2; x2 and y2 exclusive) of a (S, S) mask's non-zero pixels."""
    ys, xs = torch.nonzero(mask > 0.5, as_tuple=True)
    return torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)


def identity(count: int, **changes: torch.Tensor) -> Draw:
    """Parameters that change nothing, but for ``changes``."""
    values = {
        "flip": torch.zeros(count, dtype=torch.bool),
        "scale": torch.ones(count),
        "shift": torch.zeros(count, 2),
        "brightness": torch.ones(count),
        "contrast": torch.ones(count),
        "saturation": torch.ones(count),
        "hue": torch.zeros(count),
        "grayscale": torch.zeros(count, dtype=torch.bool),
        "sigma": torch.zeros(count),
    }
    return Draw(**{**values, **changes})


def test_a_flip_applied_twice_is_the_identity():
    images, _, boxes = demo_batch(6)
    flip = identity(6, flip=torch.ones(6, dtype=torch.bool))
    once, once_boxes = warp(images.float(), boxes, flip)
    twice, twice_boxes = warp(once, once_boxes, flip)
    assert not torch.allclose(once, images.float())
    assert torch.allclose(twice, images.float(), atol=1e-3) and torch.allclose(twice_boxes, boxes, atol=1e-6)
    assert torch.allclose(once_boxes[:, [0, 2]], 1 - boxes[:, [2, 0]])


@pytest.mark.parametrize("policy", ["light", "strong"])
def test_the_box_is_the_tight_bound_of_the_moved_mask(policy):
    """On demo images whose object masks are known: every draw of the policy, and its extremes."""
    images, masks, boxes = demo_batch()
    augmenter = Augmenter(POLICIES[policy], seed=3)
    chosen = POLICIES[policy]
    draws = [augmenter.draw(boxes) for _ in range(4)]
    for zoom in chosen.zoom:  # the largest zoom out and in the policy allows (capped so the box fits)
        extreme = Augmenter(Policy(**{**chosen.__dict__, "zoom": (zoom, zoom), "flip": 1.0}), seed=0)
        draws.append(extreme.draw(boxes))
    for draw in draws:
        _, moved = warp(images.float(), boxes, draw)
        moved_masks, _ = warp(masks, boxes, draw, mode="nearest")
        for i in range(len(boxes)):
            truth = tight_box(moved_masks[i, 0]) / FINE  # in network pixels
            assert (moved[i] * SIZE - truth).abs().max() <= 1.0, (i, moved[i] * SIZE, truth)


def test_a_box_never_leaves_the_frame_nor_inverts():
    generator = torch.Generator().manual_seed(0)
    corners = torch.rand(400, 4, generator=generator)
    boxes = torch.cat([corners[:, :2].minimum(corners[:, 2:]), corners[:, :2].maximum(corners[:, 2:])], 1)
    boxes[:20] = torch.tensor([0.0, 0.0, 1.0, 1.0])  # the whole image
    boxes[20:40, 3] = boxes[20:40, 1]  # zero height, as Caltech's airplane 118
    boxes[40:60, :2], boxes[40:60, 2:] = 0.999, 1.0  # a sliver at the border
    images = torch.zeros(len(boxes), 3, 8, 8, dtype=torch.uint8)
    for policy in ("light", "strong"):
        augmenter = Augmenter(POLICIES[policy], seed=1)
        for _ in range(5):
            _, moved = augmenter(images, boxes, MEAN, STD)
            assert (moved >= 0).all() and (moved <= 1).all()
            assert (moved[:, 2] >= moved[:, 0]).all() and (moved[:, 3] >= moved[:, 1]).all()


def test_parameters_are_drawn_per_image_and_replayed_from_the_saved_state():
    images, _, boxes = demo_batch(8)
    first, second = Augmenter(POLICIES["strong"], seed=7), Augmenter(POLICIES["strong"], seed=7)
    draw = first.draw(boxes)
    assert len(set(draw.scale.tolist())) == 8 and len(set(draw.brightness.tolist())) == 8  # not one per batch
    second.draw(boxes)
    saved = first.state_dict()
    after = first(images, boxes, MEAN, STD)
    replay = Augmenter(POLICIES["strong"], seed=123)
    replay.load_state_dict(saved)
    again = replay(images, boxes, MEAN, STD)
    assert torch.equal(after[0], again[0]) and torch.equal(after[1], again[1])
    assert torch.equal(second(images, boxes, MEAN, STD)[0], after[0])  # the same seed, the same stream


def test_each_colour_step_does_what_it_says():
    grey = torch.full((1, 3, 4, 4), 100.0)
    colour = torch.tensor([200.0, 50.0, 10.0]).view(1, 3, 1, 1).expand(1, 3, 4, 4).clone()
    assert torch.allclose(recolour(grey, identity(1, brightness=torch.tensor([1.5])), *RAW), grey * 1.5)
    at_the_mean = recolour(grey, identity(1, contrast=torch.tensor([0.2])), *RAW)
    assert torch.allclose(at_the_mean, grey, atol=1e-4)
    assert torch.allclose(recolour(grey, identity(1, hue=torch.tensor([1.0])), *RAW), grey, atol=1e-3)  # no hue
    plain = recolour(colour, identity(1, grayscale=torch.tensor([True])), *RAW)
    assert torch.allclose(plain[0, 0], plain[0, 1]) and torch.allclose(plain[0, 1], plain[0, 2])
    assert plain[0, 0, 0, 0].item() == pytest.approx(0.299 * 200 + 0.587 * 50 + 0.114 * 10, abs=1e-3)
    muted = torch.tensor([150.0, 100.0, 80.0]).view(1, 3, 1, 1).expand(1, 3, 4, 4)
    shifted = recolour(muted, identity(1, hue=torch.tensor([0.5])), *RAW)  # a turn small enough to stay in gamut
    assert not torch.allclose(shifted, muted, atol=1.0)
    luma = 0.299 * shifted[0, 0] + 0.587 * shifted[0, 1] + 0.114 * shifted[0, 2]
    assert luma.allclose(torch.full((4, 4), 0.299 * 150 + 0.587 * 100 + 0.114 * 80), atol=0.5)  # the luma stays
    edge = torch.zeros(1, 3, 9, 9)
    edge[..., 4:] = 255
    blurred = blur(edge.clone(), identity(1, sigma=torch.tensor([1.0])))
    assert 0 < blurred[0, 0, 0, 3].item() < 128 < blurred[0, 0, 0, 4].item() < 255  # the step is softened


def test_a_zoom_out_shows_the_mean_colour_around_the_image():
    images = torch.ones(1, 3, 16, 16)  # normalised: a colour above the mean
    zoom_out = identity(1, scale=torch.tensor([0.5]), shift=torch.tensor([[0.25, 0.25]]))
    out, box = warp(images, torch.tensor([[0.25, 0.25, 0.75, 0.75]]), zoom_out)
    corner, centre = to_pixels(out, MEAN, STD)[0, :, 0, 0], to_pixels(out, MEAN, STD)[0, :, 8, 8]
    assert torch.allclose(corner, 255 * torch.tensor(MEAN)) and torch.allclose(out[0, :, 8, 8], torch.ones(3))
    assert not torch.allclose(centre, corner)
    assert torch.allclose(box, torch.tensor([[0.375, 0.375, 0.625, 0.625]]))


def test_augmented_training_records_its_policy_and_resumes_exactly(tmp_path, demo_dataset, script):
    common = ["--dataset", str(demo_dataset), "--image-size", "64", "--batch-size", "8", "--augment", "strong"]
    straight = script("train.py", *common, "--epochs", "4", "--output-dir", str(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr
    assert "augmenting the training batches (strong)" in straight.stdout
    assert json.loads((tmp_path / "straight" / "config.json").read_text())["augment"] == "strong"
    assert torch.load(tmp_path / "straight" / "best.pth", weights_only=True)["options"]["augment"] == "strong"
    assert script("train.py", *common, "--epochs", "2", "--output-dir", str(tmp_path / "half")).returncode == 0
    resumed = script("train.py", "--resume", str(tmp_path / "half" / "last.pth"), "--epochs", "4")
    assert resumed.returncode == 0, resumed.stderr
    assert history(tmp_path / "half") == history(tmp_path / "straight")
    unaugmented = [*common[:-2], "--epochs", "1", "--output-dir", str(tmp_path / "plain")]  # common less --augment
    plain = script("train.py", *unaugmented)
    assert history(tmp_path / "plain")[0] != history(tmp_path / "straight")[0] and plain.returncode == 0


def test_predict_previews_what_the_network_is_fed(trained_run, script, tmp_path):
    preview = ["--augment-preview", "5", "--augment", "strong", "--save", str(tmp_path)]
    done = script("predict.py", "--model", str(trained_run / "best.pth"), *preview, str(trained_run / "test_data.csv"))
    assert done.returncode == 0, done.stderr
    sheets = sorted(tmp_path.glob("*_augmented.png"))
    rows = len((trained_run / "test_data.csv").read_text().splitlines())
    assert len(sheets) == rows and "5 augmented versions (strong)" in done.stdout
    sheet = cv2.imread(str(sheets[0]))
    assert sheet is not None and sheet.shape[1] >= 6 * 64  # the image as the network sees it, then 5 versions
    assert np.all(sheet == (230, 160, 0), axis=2).sum() > 50  # each with its box drawn (the true box's blue)
