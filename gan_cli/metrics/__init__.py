"""Metric math, kept pure: tensors in, numbers out. Feature extraction and I/O live elsewhere."""
