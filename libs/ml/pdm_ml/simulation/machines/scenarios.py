"""Operating scenarios: the operating point (load, speed, ambient, noise) a machine runs at."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Scenario:
    """An operating point: factors on load and speed, an ambient offset (K), a factor on
    the noise, and the L/M/H share of the parts a mill makes. Relative to `normal`:

    ================  =====  =====  =======  =====  ==========================================
    scenario          load   speed  ambient  noise  what moves
    ================  =====  =====  =======  =====  ==========================================
    normal            1.0    1.0      0 K    1.0    nominal duty
    high_load         1.25   1.0      0 K    1.2    flow, current, power, torque and
                                                    temperatures up; pump head and mill speed
                                                    down (pump curve, mill load line)
    precision         0.7    0.9      0 K    0.5    lighter cuts and flows, less current and
                                                    power, quieter; rotating machines slower;
                                                    mills make more H parts (20/40/40 %)
    cold_environment  1.0    1.0    -15 K    1.0    every temperature ~15 K lower
    high_speed        1.0    1.15     0 K    1.3    speed, flow, vibration (~speed²) and pump
                                                    head up (affinity laws); noisier
    ================  =====  =====  =======  =====  ==========================================
    """

    name: str
    load_factor: float
    speed_factor: float
    ambient_offset_k: float
    noise_factor: float
    quality_mix: tuple[float, float, float] = (0.6, 0.3, 0.1)  # AI4I: 60/30/10 % L/M/H


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("normal", 1.0, 1.0, 0.0, 1.0),
        Scenario("high_load", 1.25, 1.0, 0.0, 1.2),
        Scenario("precision", 0.7, 0.9, 0.0, 0.5, (0.2, 0.4, 0.4)),
        Scenario("cold_environment", 1.0, 1.0, -15.0, 1.0),
        Scenario("high_speed", 1.0, 1.15, 0.0, 1.3),
    )
}


def scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown scenario {name!r}; one of {sorted(SCENARIOS)}") from None
