"""CIFAR ResNets (He et al. 2016, sec. 4.2) and Wide ResNets (Zagoruyko & Komodakis 2016).

``cifar_resnet(depth, num_classes)`` builds the ResNet-8/14/20/32/44/56/110 family used in the
knowledge-distillation literature: a 3x3 stem conv with 16 channels, three stages of ``n``
BasicBlocks with 16/32/64 channels (the first block of stages 2 and 3 halves the spatial size with
stride 2), global average pooling and a linear classifier; depth = 6n + 2.

Shortcuts: identity when the shape is unchanged, otherwise a **1x1 conv (stride 2, no bias) + BN
projection** (the paper's "option B"). The paper's own CIFAR numbers use option A (zero-padded
identity, no parameters), so these models have slightly more parameters than the usually quoted
figures (10 classes): ResNet-20 has 272,474 parameters here vs. 269,722 with option A (0.27M);
ResNet-56 855,770 vs. 853,018 (0.85M); ResNet-110 1,730,714 vs. 1,727,962 (1.7M). The projections
add 2,752 parameters whatever the depth.

``wide_resnet(depth, widen_factor, num_classes)`` builds WRN-d-k: pre-activation
BN-ReLU-conv blocks, widths 16, 16k, 32k, 64k, (d - 4) / 6 blocks per stage, a 1x1 conv shortcut
(no BN) wherever the channel count changes, and optional dropout between the two convs
(WRN-16-2: 0.69M, WRN-40-2: 2.24M, WRN-28-10: 36.5M parameters for 10 classes).

Every model's ``forward`` takes ``pixel_values`` (N x 3 x H x W floats, any H and W, CIFAR
is 32 x 32), by position or as ``model(pixel_values=x)``, and returns the logits (N x classes).
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

__all__ = [
    "CIFAR_RESNET_DEPTHS",
    "BasicBlock",
    "CifarResNet",
    "WideBasicBlock",
    "WideResNet",
    "cifar_resnet",
    "wide_resnet",
]

#: The depths used in the literature; any depth 6n + 2 with n >= 1 is accepted.
CIFAR_RESNET_DEPTHS = (8, 14, 20, 32, 44, 56, 110)


def _conv3x3(in_planes: int, planes: int, stride: int = 1) -> nn.Conv2d:
    """A 3x3 convolution with padding 1 and no bias (a BN layer follows or precedes it)."""
    return nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus shortcut, then ReLU (post-activation, He et al. 2016).

    The shortcut is the identity when ``stride == 1`` and ``in_planes == planes``, otherwise a
    1x1 conv + BN projection (option B).
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: Tensor) -> Tensor:
        """The block's output for input ``x``."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs: stem, 3 stages of ``n`` :class:`BasicBlock`, pool, fc."""

    def __init__(self, depth: int, num_classes: int, widths: tuple[int, int, int] = (16, 32, 64)):
        super().__init__()
        n = _blocks_per_stage(depth, offset=2, name="cifar_resnet")
        _check_num_classes(num_classes)
        self.depth = depth
        self.num_classes = num_classes
        self.conv1 = _conv3x3(3, widths[0])
        self.bn1 = nn.BatchNorm2d(widths[0])
        stages: list[nn.Module] = []
        in_planes = widths[0]
        for i, planes in enumerate(widths):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(BasicBlock(in_planes, planes, stride))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(in_planes, num_classes)
        _init_weights(self)

    def forward(self, pixel_values: Tensor) -> Tensor:
        """Logits (N x num_classes) for images ``pixel_values`` (N x 3 x H x W)."""
        out = F.relu(self.bn1(self.conv1(pixel_values)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)


class WideBasicBlock(nn.Module):
    """Pre-activation wide block: BN-ReLU-conv3x3-(dropout)-BN-ReLU-conv3x3 plus shortcut.

    The shortcut is the identity when the shape is unchanged, otherwise a 1x1 conv (no BN)
    applied to the pre-activated input, as in the reference WRN implementation.
    """

    def __init__(self, in_planes: int, planes: int, stride: int, dropout_rate: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = _conv3x3(in_planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.dropout_rate = dropout_rate
        self.equal_in_out = in_planes == planes and stride == 1
        self.shortcut: nn.Module | None = None
        if not self.equal_in_out:
            self.shortcut = nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """The block's output for input ``x``."""
        act = F.relu(self.bn1(x))
        out = self.conv1(act)
        out = F.relu(self.bn2(out))
        if self.dropout_rate > 0:
            out = F.dropout(out, p=self.dropout_rate, training=self.training)
        out = self.conv2(out)
        if self.shortcut is None:
            return out + x
        return out + self.shortcut(act)


class WideResNet(nn.Module):
    """WRN-d-k for 32x32 inputs: stem, 3 stages of (d-4)/6 wide blocks, BN-ReLU, pool, fc."""

    def __init__(
        self, depth: int, widen_factor: int, num_classes: int, dropout_rate: float = 0.0
    ) -> None:
        super().__init__()
        n = _blocks_per_stage(depth, offset=4, name="wide_resnet")
        _check_num_classes(num_classes)
        if not isinstance(widen_factor, int) or widen_factor < 1:
            raise ValueError(f"wide_resnet: widen_factor must be an int >= 1, got {widen_factor!r}")
        if not 0.0 <= dropout_rate < 1.0:
            raise ValueError(f"wide_resnet: dropout_rate must be in [0, 1), got {dropout_rate}")
        self.depth = depth
        self.widen_factor = widen_factor
        self.num_classes = num_classes
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = _conv3x3(3, widths[0])
        stages: list[nn.Module] = []
        in_planes = widths[0]
        for i, planes in enumerate(widths[1:]):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(WideBasicBlock(in_planes, planes, stride, dropout_rate))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.bn = nn.BatchNorm2d(in_planes)
        self.fc = nn.Linear(in_planes, num_classes)
        _init_weights(self)

    def forward(self, pixel_values: Tensor) -> Tensor:
        """Logits (N x num_classes) for images ``pixel_values`` (N x 3 x H x W)."""
        out = self.conv1(pixel_values)
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.relu(self.bn(out))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)


def cifar_resnet(depth: int, num_classes: int) -> CifarResNet:
    """The CIFAR ResNet of ``depth`` (6n + 2, e.g. 8, 14, 20, 32, 44, 56, 110) layers.

    Raises ValueError when ``depth`` is not 6n + 2 with n >= 1 or ``num_classes`` < 1.
    """
    return CifarResNet(depth, num_classes)


def wide_resnet(
    depth: int, widen_factor: int, num_classes: int, dropout_rate: float = 0.0
) -> WideResNet:
    """WRN-``depth``-``widen_factor`` (depth = 6n + 4, e.g. WRN-16-2, WRN-40-2, WRN-28-10).

    Raises ValueError when ``depth`` is not 6n + 4 with n >= 1, ``widen_factor`` < 1,
    ``num_classes`` < 1 or ``dropout_rate`` outside [0, 1).
    """
    return WideResNet(depth, widen_factor, num_classes, dropout_rate)


def _blocks_per_stage(depth: int, *, offset: int, name: str) -> int:
    """``n`` such that ``depth == 6n + offset``; ValueError otherwise."""
    if isinstance(depth, bool) or not isinstance(depth, int):
        raise ValueError(f"{name}: depth must be an int, got {depth!r}")
    if depth < 6 + offset or (depth - offset) % 6 != 0:
        raise ValueError(
            f"{name}: depth must be 6n+{offset} with n >= 1 (e.g. {6 + offset}, {18 + offset}, "
            f"{54 + offset}), got {depth}"
        )
    return (depth - offset) // 6


def _check_num_classes(num_classes: int) -> None:
    """ValueError unless ``num_classes`` is an int >= 1."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")


def _init_weights(model: nn.Module) -> None:
    """He (fan-out) init for convs, BN weight 1 / bias 0, zero bias for the classifier."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)
