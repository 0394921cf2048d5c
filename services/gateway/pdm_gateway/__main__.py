"""`python -m pdm_gateway`: run the API gateway."""

from pdm_gateway.app import create_app, run
from pdm_gateway.settings import GatewaySettings

if __name__ == "__main__":
    settings = GatewaySettings()
    run(create_app(settings=settings), settings.http_port, ws_compression=settings.ws_compression)
