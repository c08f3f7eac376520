"""VGG-11 (d2l 7.2) from ``vgg_block``s, and the channel-reduced copy the book trains."""

from torch import nn

CONV_ARCH = ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))  # (num_convs, out_channels)
SMALL_RATIO = 4  # the book divides every channel count by 4 to train on one GPU


def vgg_block(num_convs: int, in_channels: int, out_channels: int) -> nn.Sequential:
    layers = []
    for _ in range(num_convs):
        layers.append(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1))
        layers.append(nn.ReLU())
        in_channels = out_channels
    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)


def vgg(conv_arch, in_channels: int = 1, num_classes: int = 10) -> nn.Sequential:
    conv_blks = []
    for num_convs, out_channels in conv_arch:
        conv_blks.append(vgg_block(num_convs, in_channels, out_channels))
        in_channels = out_channels
    return nn.Sequential(
        *conv_blks,
        nn.Flatten(),
        # 7 x 7 is what five halvings leave of 224: the reason VGG needs 224x224 input.
        nn.Linear(out_channels * 7 * 7, 4096),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(4096, 4096),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(4096, num_classes),
    )


def vgg11(in_channels: int = 1, num_classes: int = 10) -> nn.Sequential:
    """VGG-11: five vgg_blocks (8 convolutions) and three Linear layers."""
    return vgg(CONV_ARCH, in_channels, num_classes)


def vgg11_small(in_channels: int = 1, num_classes: int = 10) -> nn.Sequential:
    """VGG-11 with every channel count divided by 4 (the one the book trains)."""
    small_conv_arch = [(num_convs, channels // SMALL_RATIO) for num_convs, channels in CONV_ARCH]
    return vgg(small_conv_arch, in_channels, num_classes)
