"""Offline and analytical code: features, detectors, training pipelines, machine physics.

Importing the package lets models registered under the old import paths load (`legacy`).
"""

from pdm_ml import legacy

legacy.install()
