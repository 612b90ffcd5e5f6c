"""Training: surrogate-gradient BPTT (:mod:`sqsnn.training.bptt`) and the local rule
(:mod:`sqsnn.training.local`, with spikes observed on a backend: :mod:`sqsnn.training.observed`)."""
