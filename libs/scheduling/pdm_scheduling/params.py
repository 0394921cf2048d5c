"""How long and how the optimiser searches, in one frozen value: the scheduler service reads it
from its settings and passes it through `solve` and `replan` to the model and the
decomposition, which both need it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class SolverParams:
    """- `time_limit_s`: wall-clock budget from the call to the end of the search (pre-check,
      warm start, model and CP-SAT); the repair and the explanations come on top (about 0.3 s
      for 1,000 orders);
    - `num_workers`, `random_seed`: CP-SAT's; 1 worker (the default) runs one sequential,
      deterministic search;
    - `deterministic_time`: CP-SAT's `max_deterministic_time` per solve, a limit that does
      not depend on the machine's load;
    - `strategy`: `full` (one model of every order), `lns` (the window decomposition) or
      `auto`: `full` up to `full_model_max_pairs` order-technician pairs, else `lns`;
    - `presolve_max_pairs`: CP-SAT's presolve runs on a full model up to this size and with a
      `time_limit_s` of 2 s or more (it pays off in proofs on small models and outlasts short
      limits on larger ones); never on the decomposition's window models;
    - `lns_window_h`, `lns_max_orders`, `lns_step_s`: window width, neighbourhood size and
      CP-SAT time per window; `lns_rounds` caps the number of windows (with
      `deterministic_time`, a run that ends by this cap is reproducible);
    - `log`: CP-SAT's search log on stdout; `extra`: further CP-SAT parameters as
      `(name, value)` pairs.
    """

    time_limit_s: float = 10.0
    num_workers: int = 1
    random_seed: int = 0
    deterministic_time: float | None = None
    strategy: Literal["auto", "full", "lns"] = "auto"
    full_model_max_pairs: int = 2000
    presolve_max_pairs: int = 1000
    lns_window_h: int = 8
    lns_max_orders: int = 40
    lns_step_s: float = 0.2
    lns_rounds: int | None = None
    log: bool = False
    extra: tuple[tuple[str, float | int | bool], ...] = ()
