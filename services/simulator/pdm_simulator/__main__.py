"""`python -m pdm_simulator`: run the fleet simulator (an IoT gateway for a simulated fleet)."""

from pdm_common.service import run_service
from pdm_simulator.app import create_app
from pdm_simulator.settings import SimulatorSettings

if __name__ == "__main__":
    run_service(create_app(), SimulatorSettings().http_port)
