"""``portkit exporter``: this host's sockets as Prometheus metrics, read at scrape time.

Each scrape takes one socket snapshot (:mod:`portkit.exporter.snapshot`, the same
one ``portkit top`` shows), folds it into gauge families (:mod:`.metrics`, pure)
and hands them to prometheus_client as fresh ``GaugeMetricFamily`` objects: no
background timer, no stale values, no client-side timestamps (Prometheus'
"Writing exporters" guide). A failed reading yields ``portkit_up 0`` rather than
an HTTP error, so the target stays up and the failure is a queryable fact.

    >>> from portkit.exporter import DEFAULT_PORT
    >>> DEFAULT_PORT
    9636

prometheus_client is imported only when a collector collects or a server starts,
so importing this package stays cheap.
"""

from __future__ import annotations

import sys
import threading
import time

from portkit.exporter._config import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    is_loopback,
    parse_destinations,
    parse_listen,
)
from portkit.exporter.metrics import PREFIX, Family, families

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

    from portkit.exporter._server import MetricsServer
    from portkit.exporter.snapshot import Snapshot
    from portkit.model import Endpoint, PortRange
    from portkit.plan import Plan

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "SocketCollector",
    "is_loopback",
    "make_registry",
    "make_server",
    "packaged",
    "parse_destinations",
    "parse_listen",
    "serve_until_stopped",
    "unexpected_family",
]


class SocketCollector:
    """A prometheus_client custom collector over a snapshot function.

    Args:
        snapshot: called once per scrape; returns a
            :class:`~portkit.exporter.snapshot.Snapshot`.
        ports: per-port series only for these ports (None: every listening port).
        destinations: ``IP:PORT`` destinations to report ephemeral port use for.
        on_error: told the message of a failed reading (the CLI prints it once).
        baseline: a baseline plan (``portkit plan snapshot``): export the listeners it
            does not allow as ``portkit_unexpected_listener`` (:func:`unexpected_family`).
    """

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        *,
        ports: tuple[PortRange, ...] | None = None,
        destinations: tuple[Endpoint, ...] = (),
        on_error: Callable[[str], None] | None = None,
        baseline: Plan | None = None,
    ) -> None:
        self._snapshot = snapshot
        self._baseline = baseline
        self._ports = ports
        self._destinations = destinations
        self._on_error = on_error
        # Scrapes are serialised: two Prometheus servers scraping at once would
        # otherwise double the CPU spent walking the same socket table.
        self._lock = threading.Lock()
        self.last_error: str | None = None

    @property
    def destinations(self) -> tuple[Endpoint, ...]:
        return self._destinations

    def gather(self) -> list[Family]:
        """The families of one scrape, ``up`` and the scrape duration included."""
        from portkit.errors import PortkitError

        start = time.perf_counter()
        with self._lock:
            try:
                snap = self._snapshot()
                fams = families(snap, ports=self._ports, destinations=self._destinations)
                if self._baseline is not None:
                    fams.append(unexpected_family(snap, self._baseline))
                up, self.last_error = 1.0, None
            except (PortkitError, OSError) as exc:
                fams, up = [], 0.0
                message = str(exc)
                if message != self.last_error and self._on_error is not None:
                    self._on_error(message)
                self.last_error = message
        up_fam = Family(f"{PREFIX}_up", "1 if the socket table could be read, else 0.")
        up_fam.add((), up)
        took = Family(
            f"{PREFIX}_scrape_duration_seconds",
            "Seconds this scrape took to read the socket table and build the metrics.",
        )
        took.add((), time.perf_counter() - start)
        return [*fams, up_fam, took]

    def collect(self) -> Iterator[Any]:
        for fam in self.gather():
            yield _to_prometheus(fam)

    def describe(self) -> list[Any]:
        # Registering must not take a snapshot (prometheus_client calls collect()
        # when a collector has no describe()).
        return []


def unexpected_family(snap: Snapshot, baseline: Plan) -> Family:
    """``portkit_unexpected_listener{port,protocol,bind} 1`` for every listener of the
    snapshot that the baseline plan does not allow (:func:`portkit.plan.unexpected_listeners`:
    a port it does not have, or a bind wider than it allows). Bounded by the listeners."""
    from portkit._sockrow import LOCAL_IP, LOCAL_PORT, PROTOCOL
    from portkit.plan import unexpected_listeners

    listening = [(str(r[PROTOCOL]), r[LOCAL_IP], r[LOCAL_PORT]) for r in snap.listening]
    fam = Family(
        f"{PREFIX}_unexpected_listener",
        "1 for a listener the --baseline plan does not allow (a new port, or bound wider).",
        ("port", "protocol", "bind"),
    )
    for protocol, bind, port in unexpected_listeners(baseline, listening):
        fam.add((str(port), protocol, bind), 1)
    return fam


def packaged(name: str) -> str:
    """A file shipped with the exporter: ``grafana-dashboard.json`` (built by
    scripts/build-dashboard) or ``portkit-rules.yml`` (the alerting rules)."""
    from importlib.resources import files

    return files("portkit.exporter").joinpath("_data", name).read_text(encoding="utf-8")


def _to_prometheus(fam: Family) -> Any:
    """A :class:`~portkit.exporter.metrics.Family` as the prometheus_client family of its
    kind (gauge, counter, or summary with quantiles)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

    if fam.kind == "summary":
        metric = Metric(fam.name, fam.help, "summary")
        for values, (count, total, quantiles) in fam.samples:
            labels = dict(zip(fam.labels, values, strict=True))
            for q, v in quantiles.items():
                metric.add_sample(fam.name, {**labels, "quantile": str(q)}, v)
            metric.add_sample(f"{fam.name}_count", labels, count)
            metric.add_sample(f"{fam.name}_sum", labels, total)
        return metric
    cls = CounterMetricFamily if fam.kind == "counter" else GaugeMetricFamily
    out = cls(fam.name, fam.help, labels=list(fam.labels))
    for values, value in fam.samples:
        out.add_metric(list(values), value)
    return out


def make_registry(collector: SocketCollector, *, process_metrics: bool = True) -> Any:
    """A prometheus_client registry holding ``collector`` (and ``process_*`` metrics
    of the exporter itself, as every exporter has)."""
    from prometheus_client import CollectorRegistry, ProcessCollector
    from prometheus_client.core import InfoMetricFamily

    from portkit._version import __version__

    registry = CollectorRegistry()
    registry.register(collector)
    if process_metrics and sys.platform.startswith("linux"):
        ProcessCollector(registry=registry)

    class _Build:
        def collect(self) -> Iterator[Any]:
            yield InfoMetricFamily(
                f"{PREFIX}_exporter_build",
                "Version of the portkit exporter.",
                value={"version": __version__},
            )

        def describe(self) -> list[Any]:
            return []

    registry.register(_Build())
    return registry


def make_server(
    collector: SocketCollector, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT
) -> MetricsServer:
    """Bind the HTTP server (``/metrics`` and a landing page at ``/``); port 0 picks one.

    Call ``serve_forever()`` on the result (or run it in a thread), ``shutdown()`` and
    ``server_close()`` to stop.

    Raises:
        PermissionDenied: the port needs privileges.
        PortkitError: the address is in use.
    """
    from portkit.exporter._server import MetricsServer

    dests = ", ".join(ep.address for ep in collector.destinations)
    note = f"watching ephemeral port use towards {dests}" if dests else ""
    return MetricsServer(host, port, make_registry(collector), landing_note=note)


def serve_until_stopped(server: MetricsServer) -> None:
    """Serve until SIGTERM or Ctrl-C (both end cleanly), then close the socket.

    Call from the main thread (signal handlers can only be set there).
    """
    import signal

    def stop(signum: int, frame: object) -> None:
        # shutdown() waits for serve_forever() to return: call it from another thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()
