"""The training path: settings (config), Fashion-MNIST on the device (data), the book's loop
(loop, events), run folders (run, checkpoint, curves), what a person sees (display), and
torchrun (distributed). Nothing here imports ``cnnshape.inspect``."""
