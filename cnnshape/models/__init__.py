"""The networks of d2l's "modern convolutional networks" chapter, one file per family.

Importing this package registers every model (see ``cnnshape.registry``), in the book's order.
"""
# ruff: noqa: I001, F401  (import order is registration order: the book's chapter order)

from . import lenet, alexnet, vgg, nin, googlenet, batchnorm, resnet, densenet
