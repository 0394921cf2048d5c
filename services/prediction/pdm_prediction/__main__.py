"""`python -m pdm_prediction`: run the prediction service."""

from pdm_common.service import run_service
from pdm_prediction.app import create_app
from pdm_prediction.settings import PredictionSettings

if __name__ == "__main__":
    run_service(create_app(), PredictionSettings().http_port)
