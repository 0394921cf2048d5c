"""Training pipelines: build features, train, evaluate on held-out data, register, promote."""
