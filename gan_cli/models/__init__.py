"""Generators and discriminators: plain nn.Modules built from keyword arguments.

Every G takes z of shape (N, z_dim) and has `z_dim` and `shape` attributes; every D takes a
batch of data and returns one raw score per item, shape (N,).
"""
