"""Grad-CAM and saliency (`cnnlab explain`, cnnlab.explain): the numbers against Grad-CAM's
formula worked by hand and against Captum, the heatmap's mass on the region that decides a
synthetic data set's class, and a run's mistakes, test images and files explained."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import cnnlab
from cnnlab.cli import main
from cnnlab.errors import ConfigError, ModelError
from cnnlab.inspect.gradcam import explain_batch, overlay, scaled
from cnnlab.report.predictions import load_predictions


def small_net(classes: int = 3, channels: int = 1) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(channels, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(inplace=True),  # in place: the kept activations must not be overwritten
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Flatten(),
        nn.Linear(6 * 4 * 4, classes),
    )


def test_gradcam_is_its_formula_worked_by_hand():
    """conv → flatten → linear: dy_c/dA_k[i, j] is the linear weight W[c, k, i, j], so
    alpha_k = mean_ij W[c, k] and cam = ReLU(sum_k alpha_k conv(x)_k), with no autograd."""
    torch.manual_seed(1)
    conv, linear = nn.Conv2d(2, 3, 3, padding=1), nn.Linear(3 * 5 * 5, 4)
    model = nn.Sequential(conv, nn.Flatten(), linear)
    x = torch.randn(6, 2, 5, 5)
    target = torch.tensor([0, 1, 2, 3, 0, 1])
    found = explain_batch(model, x, target)

    maps = F.conv2d(x, conv.weight, conv.bias, padding=1)  # (6, 3, 5, 5)
    weights = linear.weight.detach().reshape(4, 3, 5, 5)
    alpha = weights.mean(dim=(2, 3))[target]  # (6, 3)
    by_hand = (alpha[:, :, None, None] * maps).sum(dim=1).clamp(min=0).detach()
    assert found.layer == "0"
    assert torch.equal(found.target, target)
    torch.testing.assert_close(found.cam, by_hand, rtol=1e-5, atol=1e-6)
    assert (found.cam == 0).any() and (found.cam > 0).any()  # the ReLU cut something here
    # saliency by hand: d y_c / d x = W_c through the conv's transpose, |.| max over channels
    d_maps = weights[target]  # (6, 3, 5, 5)
    d_x = F.conv_transpose2d(d_maps, conv.weight.detach(), padding=1)
    torch.testing.assert_close(found.saliency, scaled(d_x.abs().amax(dim=1)))
    torch.testing.assert_close(found.logits, model(x).detach())


@pytest.mark.parametrize("layer", [None, "4", "5", "1"])
def test_gradcam_agrees_with_captum(layer):
    captum = pytest.importorskip("captum.attr")
    model = small_net(classes=3).eval()
    model[1].running_mean.uniform_(-0.5, 0.5)  # a batch norm that is not the identity
    x = torch.randn(5, 1, 8, 8)
    target = torch.tensor([2, 0, 1, 1, 0])
    found = explain_batch(model, x, target, layer)
    module = model[int(layer or 4)]
    theirs = captum.LayerGradCam(model, module).attribute(x, target=target, relu_attributions=True)
    torch.testing.assert_close(found.cam, theirs[:, 0].detach(), rtol=1e-5, atol=1e-7)
    upsampled = captum.LayerAttribution.interpolate(theirs, (8, 8), interpolate_mode="bilinear")
    torch.testing.assert_close(found.heatmap, scaled(upsampled[:, 0].detach()))
    assert found.cam.abs().sum() > 0


def test_saliency_agrees_with_captum_on_rgb_images():
    captum = pytest.importorskip("captum.attr")
    model = small_net(classes=4, channels=3).eval()
    x = torch.randn(3, 3, 8, 8)
    found = explain_batch(model, x)
    predicted = model(x).argmax(dim=1)
    assert torch.equal(found.target, predicted)
    theirs = captum.Saliency(model).attribute(x.requires_grad_(), target=predicted, abs=True)
    torch.testing.assert_close(found.saliency, scaled(theirs.amax(dim=1)))
    assert found.heatmap.shape == found.saliency.shape == (3, 8, 8)
    assert torch.allclose(found.heatmap.flatten(1).amax(dim=1), torch.ones(3))


def test_explaining_leaves_the_model_as_it_was():
    model = small_net()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(4, 1, 8, 8)
    found = explain_batch(model, x)
    assert model.training and all(m.training for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # batch norm stats too
    assert all(p.grad is None for p in model.parameters())
    with torch.no_grad():  # explained in eval mode: batch norm used its running statistics
        torch.testing.assert_close(found.logits, model.eval()(x))


def test_bad_requests_are_one_line_errors():
    model = small_net()
    x = torch.randn(2, 1, 8, 8)
    with pytest.raises(ConfigError, match="classes 0 to 2"):
        explain_batch(model, x, target=3)
    with pytest.raises(ConfigError, match="one per image"):
        explain_batch(model, x, target=torch.tensor([0, 1, 2]))
    with pytest.raises(ConfigError, match=r"\(N, C, H, W\)"):
        explain_batch(model, x[0])
    with pytest.raises(ModelError, match="no layer named 'conv'; its conv layers are 0, 4"):
        explain_batch(model, x, layer="conv")
    with pytest.raises(ModelError, match="not maps"):
        explain_batch(model, x, layer="6")  # Flatten: (N, 96)
    with pytest.raises(ModelError, match="has no Conv2d layer"):
        explain_batch(nn.Sequential(nn.Flatten(), nn.Linear(64, 2)), x)


def test_a_one_by_one_layer_says_it_cannot_say_where():
    model = nn.Sequential(nn.Conv2d(1, 4, 8), nn.Flatten(), nn.Linear(4, 2))
    found = explain_batch(model, torch.randn(2, 1, 8, 8))
    assert found.cam.shape == (2, 1, 1)
    assert "1×1 maps" in found.where_note
    assert explain_batch(small_net(), torch.randn(1, 1, 8, 8)).where_note is None


def test_overlay_blends_image_and_colour():
    pixels = np.full((1, 2, 2), 200, np.uint8)
    heat = np.array([[0.0, 1.0], [0.5, 0.0]])
    import matplotlib

    blended = overlay(pixels, heat, alpha=0.25)
    colour = matplotlib.colormaps["jet"](heat)[..., :3] * 255
    expected = np.round(0.75 * 200 + 0.25 * colour).astype(np.uint8)
    assert blended.shape == (2, 2, 3) and blended.dtype == np.uint8
    assert np.array_equal(blended, expected)


# --- a data set decided by one region -------------------------------------------------------


def region_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """16×16 grey images of faint noise. The top-left quadrant (rows and columns 0-7) holds a
    4-pixel bar whose orientation is the class (0 horizontal, 1 vertical); each other quadrant
    holds a 2×2 square as bright as the bar, which says nothing of the class. An image's
    brightness is three quarters outside the deciding region."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 16, 16, generator=g) * 0.3
    labels = torch.randint(0, 2, (n,), generator=g)
    for i in range(n):
        for quadrant in range(4):
            top, left = 8 * (quadrant // 2), 8 * (quadrant % 2)
            r, c = (int(v) for v in torch.randint(1, 4, (2,), generator=g))
            if quadrant > 0:
                x[i, 0, top + r + 1 : top + r + 3, left + c + 1 : left + c + 3] = 1.0
            elif labels[i]:
                x[i, 0, top + r : top + r + 4, left + c + 1] = 1.0
            else:
                x[i, 0, top + r + 1, left + c : left + c + 4] = 1.0
    return x, labels


def test_gradcam_mass_lies_on_the_region_that_decides():
    """A net that pools globally (as resnets do) finds the bar; Grad-CAM must show where. A map
    that followed brightness would put three quarters of its mass on the squares."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(32, 2),
    )  # fmt: skip
    x, y = region_data(768, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(6):
        for start in range(0, len(x), 64):
            loss = F.cross_entropy(model(x[start : start + 64]), y[start : start + 64])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    test_x, test_y = region_data(200, seed=1)
    accuracy = float((model.eval()(test_x).argmax(1) == test_y).float().mean())
    assert accuracy > 0.95  # it learnt the rule, so its heatmaps have something to show

    found = explain_batch(model, test_x)  # the last conv: 8×8 maps
    assert found.layer == "3"
    heat = found.heatmap
    on_region = heat[:, :8, :8].flatten(1).sum(1) / heat.flatten(1).sum(1)
    peak = heat.flatten(1).argmax(1)
    peak_on_region = float(((peak // 16 < 8) & (peak % 16 < 8)).float().mean())
    mostly = float((on_region > 0.5).float().mean())
    brightness = test_x[:, 0, :8, :8].flatten(1).sum(1) / test_x[:, 0].flatten(1).sum(1)
    print(
        f"of {len(test_x)} test images: most Grad-CAM mass on the deciding quadrant {mostly:.1%}, "
        f"its peak there {peak_on_region:.1%}, mean share {float(on_region.mean()):.2f}; "
        f"brightness mostly there {float((brightness > 0.5).float().mean()):.1%}"
    )
    assert mostly >= 0.85 and peak_on_region >= 0.95
    assert float(on_region.mean()) > 0.6  # the quadrant is a quarter of the image
    assert float((brightness > 0.5).float().mean()) == 0.0  # brightness alone would not pass


# --- a run's mistakes, test images and files --------------------------------------------------


@pytest.fixture(scope="module")
def run(tiny_run_copy: Path) -> Path:
    """The session's tiny_run (16 confident mistakes), a copy its predictions are written to."""
    return tiny_run_copy


def test_a_run_explains_its_most_confident_mistakes_in_the_reports_order(run):
    predictions = load_predictions(run)
    found = cnnlab.explain(run, count=5)
    top = predictions.top_losses(5)
    assert found.names == [f"test image {i}" for i in top]
    assert found.labels == [int(predictions.labels[i]) for i in top]
    assert np.array_equal(found.images, np.stack([predictions.image(int(i)) for i in top]))
    assert np.array_equal(found.predicted, predictions.predicted[top])
    assert np.array_equal(found.target, found.predicted)  # by default: the predicted class
    np.testing.assert_allclose(found.probabilities.max(1), predictions.confidence[top], rtol=1e-4)
    assert found.heatmap.shape == found.saliency.shape == (5, 28, 28)
    assert found.layer == "conv2" and found.cam.shape == (5, 8, 8)  # mnist_cnn: 28 → 24 → 12 → 8


def test_test_images_files_and_pixels_give_the_same_heatmaps(run, tmp_path):
    by_index = cnnlab.explain(run, index=[3, 10], target="1")
    assert by_index.names == ["test image 3", "test image 10"]
    assert list(by_index.target) == [1, 1]
    files = []
    for k, pixels in enumerate(by_index.images):
        files.append(tmp_path / f"img{k}.png")
        Image.fromarray(pixels[0]).save(files[-1])
    by_file = cnnlab.explain(run, files, target=1)
    by_pixels = cnnlab.explain(run, by_index.images, target=1)
    assert by_file.names == ["img0.png", "img1.png"] and by_file.labels == [None, None]
    for other in (by_file, by_pixels):
        assert np.array_equal(other.images, by_index.images)
        np.testing.assert_allclose(other.heatmap, by_index.heatmap, atol=1e-6)
        np.testing.assert_allclose(other.saliency, by_index.saliency, atol=1e-6)
    with pytest.raises(ConfigError, match=r"uint8 pixels shaped \(N, 1, 28, 28\)"):
        cnnlab.explain(run, by_index.images[:, :, :14])


def test_a_module_is_explained_on_its_own_input():
    model = small_net(classes=3).train()
    x = torch.randn(2, 1, 8, 8)
    found = cnnlab.explain(model, x, class_names=["a", "b", "c"], layer="4")
    assert model.training  # left in the mode it was given in
    unnamed = cnnlab.explain(model, x, target=2)
    assert unnamed.class_names == ["0", "1", "2"] and list(unnamed.target) == [2, 2]
    with pytest.raises(ConfigError, match="classes 0 to 2"):
        cnnlab.explain(model, x, target=3)
    with pytest.raises(ConfigError, match="give class_names"):
        cnnlab.explain(model, x, target="cat")
    direct = explain_batch(model, x, layer="4")
    np.testing.assert_array_equal(found.heatmap, direct.heatmap.numpy())
    assert found.images.dtype == np.uint8 and found.images.max() == 255
    assert found.images.min() == 0  # each input shown scaled to its own range
    assert found.caption(0).startswith("image 0: predicted ")


def test_cnnlab_explain_writes_a_png_per_image(run, tmp_path, capsys):
    from cnnlab.figures import render_png

    out = tmp_path / "why"
    assert main(["explain", str(run), "--count", "3", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"Grad-CAM of layer conv2; wrote 3 files to {out}/"
    found = cnnlab.explain(run, count=3)
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"explain-{k:02d}-test_image_{i}.png" for k, i in
                     enumerate((int(n.split()[-1]) for n in found.names), 1)]  # fmt: skip
    for k, name in enumerate(names):
        assert f"  {name}  {found.caption(k)}" == lines[k + 1]
        assert (out / name).read_bytes() == render_png(found.figure([k]))
    with Image.open(out / names[0]) as png:
        assert png.size == (528, 248)  # three 2.2-inch panels at 80 dpi; one row, 3.1 inches
    assert found._repr_png_().startswith(b"\x89PNG")
    assert repr(found) == "<Explanation of 3 images, Grad-CAM of layer conv2>"  # not the pixels
