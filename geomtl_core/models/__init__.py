"""Backbones (small CNN, EfficientNet-Lite0 port, keras.applications), the multi-task model and the
saved bundle (model + partitionings + class names)."""
