"""The fleet simulator, steered through `pdm.simulator.commands.v1` (202: the simulator
applies each command once; a refused one, e.g. a mode the machine type cannot have, is
dead-lettered with the reason, see `pdm dlq list pdm.simulator.commands.v1`)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from pdm_common import topics
from pdm_common.events import AssetId, SensorName, SimulatorCommand
from pdm_gateway.api.deps import AssetIdPath, bus
from pdm_gateway.api.schemas.common import Accepted
from pdm_gateway.keys import Principal
from pdm_gateway.problems import problem_responses
from pdm_gateway.security import WRITE

router = APIRouter(prefix="/v1/simulator", tags=["simulator"])
RESPONSES = problem_responses(401, 403, 413, 422, 429, 503)


class InjectBody(BaseModel):
    mode: Literal[
        "bearing_degradation", "motor_overheating", "sensor_interference", "tool_wear", "seal_leak"
    ]
    severity: Literal["low", "medium", "high", "critical"] = "medium"
    ramp_s: Annotated[float, Field(gt=0, le=365 * 86400)] | None = Field(
        None, description="Seconds until failure (default: the severity's)."
    )
    sensor: SensorName | None = Field(None, description="Sensor of a `sensor_interference`.")


async def _send(request: Request, command: SimulatorCommand) -> Accepted:
    await bus(request).command(topics.SIMULATOR_COMMANDS, command, command.asset_id or "fleet")
    return Accepted(command_id=command.command_id, detail=f"{command.action} sent to the simulator")


@router.post("/commands", response_model=Accepted, status_code=202, responses=RESPONSES)
async def command(request: Request, body: SimulatorCommand, _: Principal = WRITE) -> Accepted:
    """Any simulator command (inject, clear, scenario, rate) as on the topic."""
    return await _send(request, body)


@router.post(
    "/assets/{asset_id}/inject", response_model=Accepted, status_code=202, responses=RESPONSES
)
async def inject(
    request: Request, asset_id: AssetIdPath, body: InjectBody, _: Principal = WRITE
) -> Accepted:
    """Start a failure on one simulated machine; it degrades progressively to failure."""
    return await _send(
        request, SimulatorCommand(action="inject", asset_id=asset_id, **body.model_dump())
    )


@router.post(
    "/assets/{asset_id}/clear", response_model=Accepted, status_code=202, responses=RESPONSES
)
async def clear(request: Request, asset_id: AssetIdPath, _: Principal = WRITE) -> Accepted:
    """Repair a simulated machine (its failures are cleared)."""
    return await _send(request, SimulatorCommand(action="clear", asset_id=asset_id))


class ScenarioBody(BaseModel):
    scenario: Literal["normal", "high_load", "precision", "cold_environment", "high_speed"]
    asset_id: AssetId | None = Field(None, description="One machine; the whole fleet if absent.")


@router.post("/scenario", response_model=Accepted, status_code=202, responses=RESPONSES)
async def scenario(request: Request, body: ScenarioBody, _: Principal = WRITE) -> Accepted:
    """Change the operating point of the fleet (or of one machine)."""
    return await _send(
        request,
        SimulatorCommand(action="scenario", scenario=body.scenario, asset_id=body.asset_id),
    )
