"""Optimizers (``conf/optimizer``), a leaf: built from a config mapping, weight decay kept off
biases and norms."""
