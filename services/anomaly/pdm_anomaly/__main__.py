"""`python -m pdm_anomaly`: run the anomaly service."""

from pdm_anomaly.app import create_app
from pdm_anomaly.settings import AnomalySettings
from pdm_common.service import run_service

if __name__ == "__main__":
    run_service(create_app(), AnomalySettings().http_port)
