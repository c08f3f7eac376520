"""The networks of d2l's "modern convolutional networks" chapter, one file per family.

Each file reads top to bottom as the book writes it: blocks, then the network's builder
``f(in_channels=1, num_classes=10) -> nn.Module``. ``cnnshape.registry`` names the builders
and carries each one's defaults and checked facts.
"""
