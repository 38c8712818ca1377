"""Training objectives for the engine (``generative.training.fit``): classification, segmentation, sequences."""
