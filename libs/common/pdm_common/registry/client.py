"""An MLflow client for a tracking URI: reachability first, transport errors translated."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from pdm_common.registry.errors import RegistryUnavailable

if TYPE_CHECKING:
    from mlflow import MlflowClient

_HEALTH_TIMEOUT_S = 3.0
#: MLflow error codes that mean "the registry answered: no such thing".
_NOT_FOUND_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"})


def check_reachable(tracking_uri: str, timeout: float = _HEALTH_TIMEOUT_S) -> None:
    """Fail fast with `RegistryUnavailable` when an HTTP tracking server does not answer.

    MLflow's own client retries a refused connection with back-off for about two minutes
    before it fails; one `GET /health` answers the question in milliseconds. Any HTTP answer
    counts as reachable (a proxy may not route /health); non-HTTP URIs are not probed.
    """
    if not tracking_uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{tracking_uri.rstrip('/')}/health", timeout=timeout):
            pass
    except urllib.error.HTTPError:
        return
    except (OSError, ValueError) as exc:
        raise RegistryUnavailable(tracking_uri, getattr(exc, "reason", exc)) from exc


def _client(tracking_uri: str) -> MlflowClient:
    from mlflow import MlflowClient

    check_reachable(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _is_not_found(exc: BaseException) -> bool:
    return getattr(exc, "error_code", None) in _NOT_FOUND_CODES


@contextmanager
def _translated(tracking_uri: str) -> Iterator[None]:
    """Turn transport failures inside MLflow calls into `RegistryUnavailable`."""
    import requests

    try:
        yield
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise RegistryUnavailable(tracking_uri, exc) from exc
    except Exception as exc:
        if "Max retries exceeded" in str(exc) or "Connection refused" in str(exc):
            raise RegistryUnavailable(tracking_uri, exc) from exc
        raise


@contextmanager
def _tracking(tracking_uri: str) -> Iterator[None]:
    """Run fluent MLflow calls (log_model, start_run) against `tracking_uri`, then restore."""
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    with _use_tracking_uri(tracking_uri), _translated(tracking_uri):
        yield
