"""Simulated machine physics, shared by the simulator service and the training pipelines."""
