"""`python -m pdm_ingest`: run the ingest service."""

from pdm_common.service import run_service
from pdm_ingest.app import create_app
from pdm_ingest.settings import IngestSettings

if __name__ == "__main__":
    run_service(create_app(), IngestSettings().http_port)
