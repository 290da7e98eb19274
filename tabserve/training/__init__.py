"""Training: which type each column is (and why), fitting and evaluating the pipeline, saving a model version."""
