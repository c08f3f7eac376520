"""AlexNet (d2l 7.1), for 1-channel 224x224 Fashion-MNIST."""

from torch import nn


def alexnet(in_channels: int = 1, num_classes: int = 10) -> nn.Sequential:
    """AlexNet: 5 convolutions, 3 max-pools, Linear(6400, 4096) x2 with dropout."""
    return nn.Sequential(
        # An 11x11 window with stride 4 shrinks the image fast.
        nn.Conv2d(in_channels, 96, kernel_size=11, stride=4, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(96, 256, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(256, 384, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(384, 384, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Flatten(),
        # 6400 = 256 x 5 x 5: this fixed width is why AlexNet only takes inputs near 224.
        nn.Linear(6400, 4096),
        nn.ReLU(),
        nn.Dropout(p=0.5),
        nn.Linear(4096, 4096),
        nn.ReLU(),
        nn.Dropout(p=0.5),
        nn.Linear(4096, num_classes),
    )
