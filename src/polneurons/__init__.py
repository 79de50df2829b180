"""polneurons: political stance cross-topic generalization, neurons, patching and InhibitFT."""

__version__ = "0.1.0"
