"""`python -m pdm_gateway`: run the API gateway."""

from pdm_gateway.app import create_app, run
from pdm_gateway.settings import GatewaySettings

if __name__ == "__main__":
    run(create_app(), GatewaySettings().http_port)
