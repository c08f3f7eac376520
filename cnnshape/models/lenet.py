"""LeNet as d2l's previous chapter builds it: the network ``train_ch6`` was written for."""

from torch import nn


def lenet(in_channels: int = 1, num_classes: int = 10) -> nn.Sequential:
    """LeNet-5 with sigmoid and average pooling (the previous chapter's train_ch6 model)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, kernel_size=5, padding=2),
        nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5),
        nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120),
        nn.Sigmoid(),
        nn.Linear(120, 84),
        nn.Sigmoid(),
        nn.Linear(84, num_classes),
    )
