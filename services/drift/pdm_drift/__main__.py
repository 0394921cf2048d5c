"""`python -m pdm_drift`: run the drift (model-lifecycle) service."""

from pdm_common.service import run_service
from pdm_drift.app import create_app
from pdm_drift.settings import DriftSettings

if __name__ == "__main__":
    run_service(create_app(), DriftSettings().http_port)
