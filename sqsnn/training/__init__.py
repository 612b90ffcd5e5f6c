"""Training: surrogate-gradient BPTT (:mod:`sqsnn.training.bptt`) and the local rule."""
