"""Prometheus metrics of ``movierec serve``, exposed at ``GET /metrics``.

Each :class:`Metrics` has its own ``CollectorRegistry`` (not prometheus-client's global
one), so several servers in one process (the tests) never clash. ``serving.server``
records every answered request with :meth:`Metrics.observe` under its route template
(``/v1/models/{name}:predict``, never the raw path, so label values stay bounded); the
model versions, the reload failures and the server's queue state are read at scrape time
by a custom collector, so they are never stale.

Metrics:
  ``movierec_http_requests_total{endpoint, method, status}``: requests answered.
  ``movierec_http_request_duration_seconds{endpoint, method}``: histogram, from the
  request's first byte to its answer ready to
  write.
  ``movierec_http_rejected_total{reason}``: ``queue_full`` (503 + Retry-After),
  ``max_connections`` (503, closed), ``deadline`` (504), ``read_timeout`` (408).
  ``movierec_model_version{model}``: the version served of each loaded model.
  ``movierec_model_reload_failures_total{model}``: from ``ModelStore.status()`` when the
  store has it, else the versions the store skipped.
  ``movierec_http_open_connections``, ``movierec_http_queued_requests``,
  ``movierec_http_busy_workers``, ``movierec_draining``: the server's state.
"""

from collections import Counter as _Tally
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # text/plain; version=0.0.4; charset=utf-8
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


class Metrics:
    """The request metrics of one server and the collector of its store's state.

    Args:
      store: a ``ModelStore`` (read at scrape time); None for none.
    """

    def __init__(self, store=None):
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "movierec_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "movierec_http_request_duration_seconds",
            "Time from a request's first byte to its answer ready, by route template.",
            ["endpoint", "method"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.rejected = Counter(
            "movierec_http_rejected",
            "Requests or connections refused: queue_full, max_connections, deadline, "
            "read_timeout.",
            ["reason"],
            registry=self.registry,
        )
        self._state: Callable[[], dict[str, float]] | None = None
        self.registry.register(_StateCollector(store, self))

    def observe(self, endpoint: str, method: str | None, status: int, seconds: float) -> None:
        method = method if method in _METHODS else "other"
        self.requests.labels(endpoint, method, str(status)).inc()
        self.latency.labels(endpoint, method).observe(seconds)

    def reject(self, reason: str) -> None:
        self.rejected.labels(reason).inc()

    def bind_server_state(self, state: Callable[[], dict[str, float]]) -> None:
        """``state()`` -> ``{"open_connections", "queued_requests", "busy_workers",
        "draining"}``, read at each scrape."""
        self._state = state

    def exposition(self) -> bytes:
        """The text exposition format (``CONTENT_TYPE``) of every metric."""
        return generate_latest(self.registry)


class _StateCollector:
    """Model versions, reload failures and server state, read when scraped."""

    def __init__(self, store, metrics: Metrics):
        self._store, self._metrics = store, metrics

    def describe(self):
        return []  # unchecked: the families are built at each scrape

    def collect(self):
        store = self._store
        if store is not None:
            versions = GaugeMetricFamily(
                "movierec_model_version", "The version served of each model.", labels=["model"]
            )
            for name, version in sorted(store.snapshot.versions().items()):
                versions.add_metric([name], version)
            yield versions
            failures = CounterMetricFamily(
                "movierec_model_reload_failures",
                "Model versions that failed to load, by model.",
                labels=["model"],
            )
            for name, count in sorted(_reload_failures(store).items()):
                failures.add_metric([name], count)
            yield failures
        state = self._metrics._state
        if state is not None:
            for key, value in state().items():
                yield GaugeMetricFamily(f"movierec_{_state_name(key)}", _HELP[key], value=value)


_HELP = {
    "open_connections": "Client connections open now.",
    "queued_requests": "Requests waiting for a worker.",
    "busy_workers": "Workers running a request.",
    "draining": "1 while the server drains before exiting, else 0.",
}


def _state_name(key: str) -> str:
    return key if key == "draining" else f"http_{key}"


def _reload_failures(store) -> dict[str, int]:
    status = getattr(store, "status", None)
    if callable(status):
        try:
            return {str(k): int(v) for k, v in (status().get("reload_failures") or {}).items()}
        except Exception:  # a scrape must not fail with the store's bookkeeping
            return {}
    tally = _Tally(name for name, _ in getattr(store, "skipped", {}))
    return {name: tally.get(name, 0) for name in getattr(store, "names", ())}
