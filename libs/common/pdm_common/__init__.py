"""Shared code of the predictive-maintenance platform (the only code services share)."""
