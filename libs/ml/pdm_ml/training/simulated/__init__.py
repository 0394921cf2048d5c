"""Failure and RUL models of the simulated fleet (pump, motor, compressor), trained offline.

`pdm train simulated --asset-type pump` generates run-to-failure histories from the
simulator's own machine models (`pdm_ml.simulation.machines`, no Kafka), trains two models per
asset type and registers them as `failure-<type>` and `rul-<type>`:

* failure: LightGBM binary classifier, P(the machine fails within `horizon_h` hours of the
  newest snapshot), with the decision threshold chosen on out-of-fold predictions, a
  multi-class failure-mode model (conditional on failure) and TreeSHAP factors;
* RUL: three LightGBM quantile regressors (p10/p50/p90) of the hours to failure, capped at
  `rul_cap_h` (a machine with no developing failure is "at least the cap"), with the
  interval calibrated by Mondrian conformal quantile regression (`cmapss.conformal_bins`).

Both read the same features: `features.windows.window_features` over the last
4 / 16 / 64 snapshots (counted in snapshots, not hours), i.e. the prediction service's
`PDM_PREDICTION_HISTORY_ROWS` (64) stored rows.

Generated data (`plan_fleet`, `simulate`), one snapshot per `period_s` (60 s):

* `machines` machines of one type, each starting in a random operating scenario and
  switching to another one every 720 snapshots on average (12 h at 60 s; exponential
  gaps): level shifts and thermal transients that are not failures;
* most suffer one real failure (the type's `ALLOWED_MODES` except sensor interference), in
  equal numbers per mode, with a random severity (its magnitude) and a ramp drawn
  log-uniform between 20 and 4,320 snapshots (20 min to 72 h at 60 s), so the simulator's
  severity defaults (1-72 h) and its compressed demos (a 30-600 s ramp at 1 Hz is 30-600
  snapshots) are inside the training range *counted in snapshots*; 20 % of them are
  censored (the history stops before the failure), the others run up to 60 snapshots past it;
  half of those are repaired (`Machine.clear`: before the failure at 60-100 % of the ramp,
  or after it) and then run healthy for 64-512 more snapshots;
* 15 % get sensor interference instead (a measurement fault, labelled healthy: the hard
  negatives), 20 % stay healthy.

Labels start at the injection (the P point of the P-F curve): before it, no sensor can tell
that a failure will start, so a row is positive only when a real failure is active and due
within the horizon, and its RUL is the time to that failure (else the cap). A repair ends
it; the `SETTLE_ROWS` rows after one, whose windows still hold the failure, train as
negatives but are left out of the threshold's false-alarm budget and of every score.

Evaluation: machines are split, stratified by kind and mode, into training (75 %) and
held-out (25 %) machines before anything is fitted; every choice (threshold, interval
margins) is made on out-of-fold predictions of GroupKFold over training machines. The
held-out machines give the reported metrics and the champion comparison (the champion is
re-scored on the candidate's held-out machines with its own features).

Time scale (the honest part): degradation follows (elapsed / ramp) ** k, so on a window
counted in snapshots a failing machine looks the same at any sampling period for the same
ramp *in snapshots*; levels (mean/min/max/last of vibration, temperature, pressure...)
carry most of the signal and transfer across ramp durations and sampling periods. What
does not transfer: the hours (horizon, RUL) assume one snapshot per `period_s`, slopes
per snapshot scale with period/ramp, and the thermal lag (10-30 min) and load process
(10 min) have fixed time constants. See docs/models.md, "Simulated fleet".

The parts: `config` (`SimConfig` and the constants every part shares), `plans` (what happens
to each generated machine), `generation` and `labels` (histories and their labels),
`features` (the one code path of training and serving), `models` (the two model classes,
plain files on disk), `pyfunc` (what MLflow loads), `fitting`, `evaluation` and
`registration` (log, register, promote). Registered models name this package as their
pyfunc loader (`PYFUNC_LOADER_MODULE`), so it keeps `_load_pyfunc` and the model classes
importable from here; everything public is.
"""

from pdm_ml.training.simulated.config import (
    ASSET,
    FAILURE_METRIC,
    FEATURE_SET,
    MIN_ROWS,
    ROW,
    RUL_METRIC,
    SETTLE_ROWS,
    SIM_WINDOWS,
    SIMULATED_TYPES,
    FloatArray,
    SimConfig,
    SimTrainError,
    failure_modes,
    sensors_of,
)
from pdm_ml.training.simulated.evaluation import (
    alarm_metrics,
    evaluate_failure,
    evaluate_rul,
    transfer_check,
)
from pdm_ml.training.simulated.features import featurise, latest_features, tree_shap_top
from pdm_ml.training.simulated.fitting import (
    SimTraining,
    choose_cut,
    fit_failure,
    fit_rul,
    train_simulated,
    training_rows,
)
from pdm_ml.training.simulated.generation import EPOCH, generate, simulate
from pdm_ml.training.simulated.labels import label_frame
from pdm_ml.training.simulated.models import (
    FORMAT_VERSION,
    PYFUNC_LOADER_MODULE,
    SimFailureModel,
    SimModel,
    SimRulModel,
)
from pdm_ml.training.simulated.plans import Kind, MachinePlan, plan_fleet
from pdm_ml.training.simulated.pyfunc import PyfuncAdapter, load_model

# MLflow calls `_load_pyfunc` here for every model registered with this loader module.
from pdm_ml.training.simulated.pyfunc import _load_pyfunc as _load_pyfunc
from pdm_ml.training.simulated.registration import (
    REFERENCE_ROWS,
    promote_failure,
    promote_rul,
    register_failure,
    register_rul,
)

__all__ = [
    "ASSET",
    "EPOCH",
    "FAILURE_METRIC",
    "FEATURE_SET",
    "FORMAT_VERSION",
    "MIN_ROWS",
    "PYFUNC_LOADER_MODULE",
    "REFERENCE_ROWS",
    "ROW",
    "RUL_METRIC",
    "SETTLE_ROWS",
    "SIMULATED_TYPES",
    "SIM_WINDOWS",
    "FloatArray",
    "Kind",
    "MachinePlan",
    "PyfuncAdapter",
    "SimConfig",
    "SimFailureModel",
    "SimModel",
    "SimRulModel",
    "SimTrainError",
    "SimTraining",
    "alarm_metrics",
    "choose_cut",
    "evaluate_failure",
    "evaluate_rul",
    "failure_modes",
    "featurise",
    "fit_failure",
    "fit_rul",
    "generate",
    "label_frame",
    "latest_features",
    "load_model",
    "plan_fleet",
    "promote_failure",
    "promote_rul",
    "register_failure",
    "register_rul",
    "sensors_of",
    "simulate",
    "train_simulated",
    "training_rows",
    "transfer_check",
    "tree_shap_top",
]
