"""The one feature code path: training and serving compute features with these functions."""
