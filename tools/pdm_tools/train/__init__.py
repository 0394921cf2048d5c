"""`pdm train ...`: the commands that run the training pipelines of `pdm_ml.training`."""
