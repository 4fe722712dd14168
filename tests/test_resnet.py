"""Tests for ckd_tune.resnet: CIFAR ResNet / WRN depths, parameter counts, forward, validation."""

from __future__ import annotations

import pytest
import torch

from ckd_tune.resnet import CIFAR_RESNET_DEPTHS, cifar_resnet, wide_resnet


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a busy 2-core machine, 2 threads make tiny convs ~50x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _conv(c_in: int, c_out: int, k: int) -> int:
    return c_in * c_out * k * k


def _bn(c: int) -> int:
    return 2 * c  # weight + bias (running stats are buffers, not parameters)


def resnet_params(depth: int, num_classes: int, projection: bool = True) -> int:
    """Parameters of ResNet-(6n+2) from the architecture: 3 stages of n BasicBlocks (16/32/64).

    ``projection``: 1x1 conv + BN shortcut where the shape changes (option B); else option A.
    """
    n = (depth - 2) // 6
    total = _conv(3, 16, 3) + _bn(16)
    c_in = 16
    for width in (16, 32, 64):
        for _ in range(n):
            total += _conv(c_in, width, 3) + _bn(width) + _conv(width, width, 3) + _bn(width)
            if c_in != width and projection:
                total += _conv(c_in, width, 1) + _bn(width)
            c_in = width
    return total + 64 * num_classes + num_classes


def wrn_params(depth: int, k: int, num_classes: int) -> int:
    """Parameters of WRN-depth-k: pre-activation blocks, 1x1 conv shortcut (no BN) on change."""
    n = (depth - 4) // 6
    total = _conv(3, 16, 3)
    c_in = 16
    for width in (16 * k, 32 * k, 64 * k):
        for _ in range(n):
            total += _bn(c_in) + _conv(c_in, width, 3) + _bn(width) + _conv(width, width, 3)
            if c_in != width:
                total += _conv(c_in, width, 1)
            c_in = width
    return total + _bn(c_in) + c_in * num_classes + num_classes


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("depth", CIFAR_RESNET_DEPTHS)
@pytest.mark.parametrize("num_classes", [10, 100])
def test_resnet_param_count_matches_architecture_formula(depth: int, num_classes: int) -> None:
    assert count(cifar_resnet(depth, num_classes)) == resnet_params(depth, num_classes)


def test_resnet_param_counts_match_the_literature() -> None:
    # Option A (the paper's) ResNet-20 is the well-known 0.27M; our option B adds 2,752.
    assert resnet_params(20, 10, projection=False) == 269_722
    assert count(cifar_resnet(20, 10)) == 272_474
    assert count(cifar_resnet(56, 10)) == pytest.approx(0.85e6, rel=0.02)
    assert count(cifar_resnet(110, 10)) == pytest.approx(1.7e6, rel=0.03)
    for depth in (8, 14, 32, 44, 56, 110):  # projections add the same 2,752 at every depth
        assert count(cifar_resnet(depth, 10)) - resnet_params(depth, 10, projection=False) == 2752


@pytest.mark.parametrize("depth", [8, 20, 110])
def test_resnet_forward_takes_pixel_values_keyword(depth: int) -> None:
    torch.manual_seed(0)
    model = cifar_resnet(depth, 10)
    x = torch.randn(2, 3, 32, 32)
    logits = model(pixel_values=x)
    assert isinstance(logits, torch.Tensor)
    assert logits.shape == (2, 10)
    assert torch.isfinite(logits).all()
    model.eval()
    assert torch.allclose(model(x), model(pixel_values=x))


def test_resnet_backward_and_strides() -> None:
    model = cifar_resnet(8, 100)
    logits = model(pixel_values=torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 100)
    logits.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    # stage outputs: 32x32 (16 ch) -> 16x16 (32 ch) -> 8x8 (64 ch)
    x = torch.randn(1, 16, 32, 32)
    assert model.layer1(x).shape == (1, 16, 32, 32)
    assert model.layer2(model.layer1(x)).shape == (1, 32, 16, 16)
    assert model.layer3(model.layer2(model.layer1(x))).shape == (1, 64, 8, 8)
    # shortcut: identity in stage 1, 1x1 conv + BN projection where the shape changes
    assert isinstance(model.layer1[0].shortcut, torch.nn.Identity)
    proj = model.layer2[0].shortcut
    assert isinstance(proj[0], torch.nn.Conv2d) and proj[0].kernel_size == (1, 1)
    assert isinstance(proj[1], torch.nn.BatchNorm2d)


@pytest.mark.parametrize("depth", [0, 2, 7, 9, 19, 21, -4, 20.0, True, "20"])
def test_resnet_rejects_depth_not_6n_plus_2(depth: object) -> None:
    with pytest.raises(ValueError, match="depth"):
        cifar_resnet(depth, 10)  # type: ignore[arg-type]


@pytest.mark.parametrize("num_classes", [0, -1, 2.0])
def test_resnet_rejects_bad_num_classes(num_classes: object) -> None:
    with pytest.raises(ValueError, match="num_classes"):
        cifar_resnet(20, num_classes)  # type: ignore[arg-type]


@pytest.mark.parametrize(("depth", "k"), [(10, 1), (16, 1), (16, 2), (40, 2)])
def test_wrn_param_count_matches_architecture_formula(depth: int, k: int) -> None:
    assert count(wide_resnet(depth, k, 10)) == wrn_params(depth, k, 10)


def test_wrn_param_counts_match_the_literature() -> None:
    assert count(wide_resnet(16, 2, 10)) == pytest.approx(0.69e6, rel=0.01)
    assert count(wide_resnet(40, 2, 10)) == pytest.approx(2.24e6, rel=0.01)
    assert wrn_params(28, 10, 10) == 36_479_194  # WRN-28-10 (36.5M), not built: too big to test


def test_wrn_forward_and_dropout() -> None:
    torch.manual_seed(0)
    model = wide_resnet(10, 2, 100, dropout_rate=0.3)
    x = torch.randn(2, 3, 32, 32)
    assert model(pixel_values=x).shape == (2, 100)
    model.eval()
    assert torch.equal(model(pixel_values=x), model(pixel_values=x))


@pytest.mark.parametrize(
    ("depth", "k", "num_classes", "dropout"),
    [(20, 1, 10, 0.0), (28, 0, 10, 0.0), (16, 2, 0, 0.0), (16, 2, 10, 1.0), (4, 1, 10, 0.0)],
)
def test_wrn_rejects_bad_arguments(depth: int, k: int, num_classes: int, dropout: float) -> None:
    with pytest.raises(ValueError):
        wide_resnet(depth, k, num_classes, dropout_rate=dropout)
