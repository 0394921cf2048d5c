"""`python -m pdm_scheduler`: run the scheduler service."""

from pdm_common.service import run_service
from pdm_scheduler.app import create_app
from pdm_scheduler.settings import SchedulerSettings

if __name__ == "__main__":
    run_service(create_app(), SchedulerSettings().http_port)
