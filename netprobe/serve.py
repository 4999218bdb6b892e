"""`netprobe serve CONFIG --listen 127.0.0.1:9469`: a Prometheus exporter.

The `watch` engine (`DrillRunner`) probes on an interval and keeps only the
last few cycles; after each cycle the raw results of the last `window` cycles
are pooled per probe (one attempt per cycle, so a window of 3 is a probe of 3
attempts spread over 3 intervals: one lost packet is loss, not a cut line),
diagnosed like a `check` run, and published:

- `/metrics`: the report's metrics through `netprobe.report.prometheus` (the
  same exposition as `check -o x.prom`), the exporter's own
  (`netprobe_serve_*`) and the process collector's;
- `/report.json`: the latest report (schema netprobe.report/1);
- `/-/healthy`: 200 while cycles keep coming, 503 when the loop has stalled;
- `/probe?group=NAME` or `/probe?target=NAME`: like blackbox_exporter, one
  run of `check`'s pipeline for that part of the topology per scrape, bounded
  by the scrape's timeout (`X-Prometheus-Scrape-Timeout-Seconds`) less a
  margin; probes not done by then are reported as not measured.

The HTTP server runs in threads (stdlib wsgiref); probing stays on the one
asyncio loop, and a `/probe` request hands its run to that loop. SIGTERM or
SIGINT stops the loop after the cycle in flight and closes the server.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from netprobe.diagnosis import diagnose
from netprobe.diagnosis.model import Diagnosis, Severity
from netprobe.errors import NetprobeError
from netprobe.evidence import Evidence, ProbeError, ProbeResult
from netprobe.report.model import Report, build_report
from netprobe.signals import loop_stops_on_signals
from netprobe.topology import Topology
from netprobe.watch.engine import DrillRunner, WatchOptions, groups_crossed
from netprobe.watch.timeline import Cycle, Route

DEFAULT_PORT = 9469  # blackbox_exporter's neighbour; free in the Prometheus port list
SCRAPE_TIMEOUT_OFFSET_S = 0.5  # as blackbox_exporter: answer before Prometheus gives up
DEFAULT_PROBE_TIMEOUT_S = 10.0
MAX_PROBES_IN_FLIGHT = 4  # /probe runs at once; more get 503 instead of piling up


@dataclass(frozen=True)
class ServeOptions:
    interval_s: float = 10.0
    window: int | None = None  # cycles pooled into one report; None: the config's attempts
    fail_on: Severity = Severity.WARNING
    rate_pps: float = 2000.0
    hop_check: bool = True
    traces: bool = True  # /probe runs trace like `check` does
    probe_timeout_s: float = DEFAULT_PROBE_TIMEOUT_S  # /probe without a scrape timeout header
    history: str | None = None  # SQLite history: one run per window (disjoint windows)

    def window_for(self, topology: Topology) -> int:
        return max(1, self.window or topology.config.defaults.attempts)


def parse_listen(value: str) -> tuple[str, int]:
    """'127.0.0.1:9469', '[::1]:9469', 'localhost:0' -> (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise NetprobeError(f"--listen {value}: use HOST:PORT, e.g. 127.0.0.1:{DEFAULT_PORT} "
                            f"or [::1]:{DEFAULT_PORT}")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host:
        raise NetprobeError(f"--listen {value}: name the address to listen on, e.g. "
                            f"127.0.0.1:{port} (0.0.0.0:{port} for every interface)")
    return host, int(port)


# -- pure: from cycles to a report ------------------------------------------------

def pool_results(cycles: Sequence[Sequence[ProbeResult]]) -> list[ProbeResult]:
    """One result per probe from one-attempt results of consecutive cycles (oldest
    first): attempts and replies add up; the error is the newest one, and stands
    only when no attempt of the window was answered."""
    by_id: dict[str, list[ProbeResult]] = {}
    for results in cycles:
        for r in results:
            by_id.setdefault(r.id, []).append(r)
    out = []
    for rs in by_id.values():
        latest = rs[-1]
        measured = [r for r in rs if r.measured]
        if not measured:
            out.append(latest)
            continue
        rtts = tuple(x for r in measured for x in r.rtts_ms)
        answered = [r for r in measured if r.rtts_ms]
        base = answered[-1] if answered else measured[-1]
        out.append(dataclasses.replace(
            base, sent=sum(r.sent for r in measured), rtts_ms=rtts,
            error=None if answered else base.error, message=None if answered else base.message,
            started_at=measured[0].started_at,
            duration_s=None if measured[0].started_at is None or base.started_at is None
            else base.started_at + (base.duration_s or 0.0) - measured[0].started_at))
    return out


def route_traces(topology: Topology, routes: Iterable[Route]) -> list[ProbeResult]:
    """The hop check's answers as trace evidence, so the diagnosis sees which line
    carries each group's traffic: a TTL-limited probe whose time-exceeded came
    from a line's hop is a short trace through that line. A route with no line
    is no evidence (a trace that stops short blames nobody)."""
    out = []
    for r in routes:
        if r.line is None or r.hop is None or r.endpoint not in topology.components:
            continue
        ttl = r.ttl or 1
        hops = [{"ttl": i, "address": None, "rtt_ms": None} for i in range(1, ttl)]
        hops.append({"ttl": ttl, "address": r.hop, "rtt_ms": None})
        out.append(ProbeResult(
            id=f"{r.endpoint}/trace", kind="trace", target=r.endpoint,
            address=topology.components[r.endpoint].address, sent=1,
            error=ProbeError.TTL_EXCEEDED, reached=False,
            message=f"hop check: TTL {ttl} answered by {r.hop} ({r.line})",
            detail={"hops": hops, "source": HOP_CHECK}))
    return out


def report_from_window(topology: Topology, config: str, window: Sequence[tuple[Cycle, list[ProbeResult]]],
                       fail_on: Severity, **extra: Any) -> Report:
    """Diagnose the pooled results of the last cycles, like one `check` run."""
    first, last = window[0][0], window[-1][0]
    results = pool_results([rs for _, rs in window])
    results += route_traces(topology, last.routes)
    evidence = Evidence(results=tuple(results), started_at=first.wall,
                        duration_s=last.t_s + last.duration_s - first.t_s)
    return build_report(topology.vantage, config, evidence, diagnose(topology, evidence),
                        fail_on, thresholds=topology.thresholds, topology=topology.to_json(),
                        **extra)


HOP_CHECK = "hop_check"


def without_hop_checks(report: Report) -> Report:
    """The report for /metrics: the hop check's short traces tell the diagnosis the
    active line (and stay in /report.json), but they stop short by design, and a
    `netprobe_probe_success 0` for them would read as a failed probe."""
    kept = tuple(r for r in report.evidence.results if r.detail.get("source") != HOP_CHECK)
    if len(kept) == len(report.evidence.results):
        return report
    return dataclasses.replace(report, evidence=dataclasses.replace(report.evidence,
                                                                    results=kept))


def selection(topology: Topology, group: str | None, target: str | None) -> frozenset[str]:
    """The components a /probe scrape measures: the group's lines and everything
    behind it, or the target and its services; plus what their paths cross, so
    the diagnosis can localise within the selection."""
    comps = topology.components
    if group is not None:
        if group not in topology.groups:
            raise KeyError(f"no redundancy group named {group!r}; the config has "
                           f"{', '.join(sorted(topology.groups)) or 'none'}")
        picked = set(topology.groups[group].lines)
        picked |= {n for n in comps if group in groups_crossed(topology, n)}
    else:
        if target not in comps:
            raise KeyError(f"no component named {target!r}")
        picked = {target} | {c.name for c in topology.services_of(target)}
    todo, out = list(picked), set()
    while todo:
        name = todo.pop()
        if name in out:
            continue
        out.add(name)
        if name in topology.groups:
            todo.extend(topology.groups[name].lines)
        elif name in comps:
            todo.extend(comps[name].path)
            if comps[name].parent:
                todo.append(comps[name].parent)
    return frozenset(n for n in out if n in comps)


def select_report(report: Report, names: frozenset[str], group: str | None) -> Report:
    """The part of a report about `names` (and the group), with its own status."""
    d = report.diagnosis
    groups = tuple(g for g in d.groups if g.name == group or set(g.lines) & names)
    keep = names | {g.name for g in groups}
    diagnosis = Diagnosis(
        components=tuple(c for c in d.components if c.name in names), groups=groups,
        findings=tuple(f for f in d.findings if set(f.components) & keep),
        explanations=tuple(e for e in d.explanations if set(e) & keep))
    evidence = dataclasses.replace(report.evidence, results=tuple(
        r for r in report.evidence.results if r.target in names))
    return build_report(report.vantage, report.config, evidence, diagnosis, report.fail_on,
                        thresholds=report.thresholds, **report.extra)


# -- state shared by the loop and the HTTP threads ---------------------------------

class ServeState:
    """The latest report and counters; written by the loop, read by HTTP threads."""

    def __init__(self, topology: Topology, config: str, options: ServeOptions) -> None:
        self.topology = topology
        self.config = config
        self.options = options
        self.window_size = options.window_for(topology)
        self._window: collections.deque[tuple[Cycle, list[ProbeResult]]] = \
            collections.deque(maxlen=self.window_size)
        self._lock = threading.Lock()
        self.report: Report | None = None
        self.report_json: bytes | None = None
        self.cycles_total = 0
        self.slow_cycles_total = 0
        self.probe_requests_total: collections.Counter[str] = collections.Counter()
        self.history_errors_total = 0
        self.last_cycle_monotonic: float | None = None
        self.started_monotonic = time.monotonic()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.probes_in_flight = threading.BoundedSemaphore(MAX_PROBES_IN_FLIGHT)

    def on_results(self, cycle: Cycle, results: list[ProbeResult]) -> None:
        self._window.append((cycle, results))
        report = report_from_window(
            self.topology, self.config, list(self._window), self.options.fail_on,
            serve={"interval_s": self.options.interval_s, "window_cycles": len(self._window),
                   "cycle": cycle.index})
        body = (json.dumps(report.to_json(), indent=2) + "\n").encode()
        # One history run per full window, so each attempt is stored once.
        if self.options.history and (cycle.index + 1) % self.window_size == 0:
            self._record(report)
        with self._lock:
            self.report, self.report_json = report, body
            self.cycles_total += 1
            self.slow_cycles_total += 1 if cycle.skipped_slots else 0
            self.last_cycle_monotonic = time.monotonic()

    def _record(self, report: Report) -> None:
        from netprobe.history import record_run

        try:
            record_run(self.options.history, report)
        except NetprobeError as exc:  # a full disk costs history, not the exporter
            self.history_errors_total += 1
            if self.history_errors_total == 1:
                print(f"netprobe serve: history not written: {exc}", file=sys.stderr,
                      flush=True)

    def latest(self) -> tuple[Report | None, bytes | None]:
        with self._lock:
            return self.report, self.report_json

    def healthy(self) -> tuple[bool, str]:
        """Healthy while cycles keep coming: the last within three intervals plus the
        probes' timeout (one slow cycle skips slots; a stalled loop stops them)."""
        now = time.monotonic()
        with self._lock:
            last = self.last_cycle_monotonic
        bound = 3 * self.options.interval_s + self.topology.config.defaults.timeout + 5.0
        since = now - (last if last is not None else self.started_monotonic)
        if since <= bound:
            return True, "OK" if last is not None else "OK: first cycle running"
        return False, f"no probe cycle finished for {since:.0f} s (bound {bound:.0f} s)"


class ServeCollector(Collector):
    """The latest report's metrics (the textfile exposition) and the exporter's own."""

    def __init__(self, state: ServeState, report: Callable[[], Report | None] | None = None
                 ) -> None:
        self.state = state
        self.report = report or (lambda: state.latest()[0])

    def collect(self) -> Iterator[Metric]:
        from netprobe.report.prometheus import ReportCollector

        report = self.report()
        if report is not None:
            yield from ReportCollector(without_hop_checks(report)).collect()
        v = self.state.topology.vantage
        cycles = CounterMetricFamily("netprobe_serve_cycles", "Probe cycles finished",
                                     labels=["vantage"])
        cycles.add_metric([v], self.state.cycles_total)
        slow = CounterMetricFamily("netprobe_serve_slow_cycles", "Cycles that overran the "
                                   "interval (slots skipped, not queued)", labels=["vantage"])
        slow.add_metric([v], self.state.slow_cycles_total)
        window = GaugeMetricFamily("netprobe_serve_window_cycles", "Cycles pooled into the "
                                   "latest report (one attempt per probe each)",
                                   labels=["vantage"])
        window.add_metric([v], len(self.state._window))
        interval = GaugeMetricFamily("netprobe_serve_interval_seconds", "Time between probe "
                                     "cycles", labels=["vantage"])
        interval.add_metric([v], self.state.options.interval_s)
        # netprobe_line_info, which joins sites by carrier, comes with the report
        yield from (cycles, slow, window, interval)


# -- HTTP ---------------------------------------------------------------------------

class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # a scrape every 15 s must not fill the journal


def _server_class(host: str) -> type[_Server]:
    if ":" in host:
        import socket

        return type("_Server6", (_Server,), {"address_family": socket.AF_INET6})
    return _Server


Response = tuple[str, list[tuple[str, str]], bytes]


def _text(status: str, body: str) -> Response:
    return status, [("Content-Type", "text/plain; charset=utf-8")], body.encode()


class ServeApp:
    """The WSGI application: routes to the state and, for /probe, to the loop."""

    def __init__(self, state: ServeState) -> None:
        self.state = state
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(ServeCollector(state))
        self.registry.register(ProcessCollector(registry=None))

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> list[bytes]:
        status, headers, body = self.route(environ)
        start_response(status, [*headers, ("Content-Length", str(len(body)))])
        return [body] if environ.get("REQUEST_METHOD") != "HEAD" else [b""]

    def route(self, environ: dict[str, Any]) -> Response:
        path = environ.get("PATH_INFO", "/")
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            return _text("405 Method Not Allowed", "use GET\n")
        if path == "/metrics":
            return "200 OK", [("Content-Type", CONTENT_TYPE_LATEST)], generate_latest(self.registry)
        if path == "/report.json":
            _, body = self.state.latest()
            if body is None:
                return _text("503 Service Unavailable", "no cycle has finished yet; try again "
                             f"after {self.state.options.interval_s:g} s\n")
            return "200 OK", [("Content-Type", "application/json")], body
        if path == "/-/healthy":
            ok, why = self.state.healthy()
            return _text("200 OK" if ok else "503 Service Unavailable", why + "\n")
        if path == "/probe":
            return self.probe(environ)
        if path == "/":
            return _text("200 OK", _INDEX.format(vantage=self.state.topology.vantage))
        return _text("404 Not Found", f"no page {path}; see /\n")

    def probe(self, environ: dict[str, Any]) -> Response:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        group = (query.get("group") or [None])[0]
        target = (query.get("target") or [None])[0]
        if (group is None) == (target is None):
            return _text("400 Bad Request", "give one of ?group=NAME or ?target=NAME\n")
        try:
            names = selection(self.state.topology, group, target)
        except KeyError as exc:
            return _text("400 Bad Request", f"{exc.args[0]}\n")
        budget_s = self.state.options.probe_timeout_s
        header = environ.get("HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS")
        if header:
            try:
                budget_s = min(budget_s, float(header))
            except ValueError:
                return _text("400 Bad Request", f"X-Prometheus-Scrape-Timeout-Seconds {header!r}"
                             " is not a number\n")
        deadline_s = max(0.2, budget_s - SCRAPE_TIMEOUT_OFFSET_S)
        loop = self.state.loop
        if loop is None or loop.is_closed():
            return _text("503 Service Unavailable", "shutting down\n")
        if not self.state.probes_in_flight.acquire(blocking=False):
            return _text("503 Service Unavailable", f"{MAX_PROBES_IN_FLIGHT} probes already "
                         "running; scrape less often or with fewer targets\n")
        try:
            future = asyncio.run_coroutine_threadsafe(
                probe_once(self.state, names, group, deadline_s), loop)
            try:
                report = future.result(timeout=deadline_s + 2.0)
            except Exception as exc:  # stopped loop, cancelled at shutdown, a bug
                future.cancel()
                return _text("503 Service Unavailable", f"probe did not finish: {exc!r}\n")
        finally:
            self.state.probes_in_flight.release()
        self.state.probe_requests_total[group or target or ""] += 1
        registry = CollectorRegistry(auto_describe=False)
        from netprobe.report.prometheus import ReportCollector

        registry.register(ReportCollector(report))
        return "200 OK", [("Content-Type", CONTENT_TYPE_LATEST)], generate_latest(registry)


_INDEX = """netprobe serve (vantage {vantage})
/metrics        the latest report's metrics, refreshed every cycle
/report.json    the latest report (schema netprobe.report/1)
/-/healthy      200 while probe cycles keep coming
/probe?group=G  probe one redundancy group now (or ?target=COMPONENT), within the scrape timeout
"""


async def probe_once(state: ServeState, names: frozenset[str], group: str | None,
                     deadline_s: float) -> Report:
    """One run of check's pipeline for the selected components, bounded by `deadline_s`."""
    from netprobe.executor import RunOptions, run_plan
    from netprobe.plan import PlanOptions, build_plan

    topology = state.topology
    tasks = build_plan(topology, PlanOptions(traces=state.options.traces))
    picked = [t for t in tasks if t.target in names]
    evidence = await run_plan(picked, RunOptions(rate_pps=state.options.rate_pps,
                                                 deadline_s=deadline_s, confirm_attempts=0))
    full = build_report(topology.vantage, state.config, evidence, diagnose(topology, evidence),
                        state.options.fail_on, thresholds=topology.thresholds)
    return select_report(full, names, group)


# -- the command ----------------------------------------------------------------------

def open_server(state: ServeState, host: str, port: int) -> WSGIServer:
    """Bind the HTTP server now: with `--netns` this happens before the process
    enters the namespace, so Prometheus reaches it on the host's address while
    every probe is sent from inside the namespace."""
    try:
        return make_server(host, port, ServeApp(state), server_class=_server_class(host),
                           handler_class=_QuietHandler)
    except OSError as exc:
        raise NetprobeError(f"--listen {host}:{port}: cannot listen ({exc.strerror or exc}); "
                            "pick another port or stop what holds it") from None


def server_url(server: WSGIServer) -> str:
    host, port = server.server_address[:2]
    shown = f"[{host}]" if ":" in str(host) else str(host)
    return f"http://{shown}:{port}"


async def serve_forever(state: ServeState, server: WSGIServer, stop: asyncio.Event) -> None:
    """Serve HTTP in a thread and probe on this loop until `stop` is set; then
    close the server (requests in flight get their answer or a 503)."""
    state.loop = asyncio.get_running_loop()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              name="netprobe-http", daemon=True)
    thread.start()
    opts = state.options
    watch = WatchOptions(interval_s=opts.interval_s, duration_s=float("inf"),
                         rate_pps=opts.rate_pps, hop_check=opts.hop_check,
                         keep_cycles=state.window_size)
    runner = DrillRunner(state.topology, watch, stop=stop, on_results=state.on_results)
    try:
        await runner.run()
    finally:
        state.loop = None
        server.shutdown()
        server.server_close()
        thread.join(timeout=5.0)


def serve_command(config_path: str, listen: str, options: ServeOptions,
                  netns: str | None = None) -> int:
    """Run the exporter until SIGTERM/SIGINT; 0 on a clean stop."""
    from netprobe.config import load_topology
    from netprobe.watch import check_watch_options

    host, port = parse_listen(listen)
    check_watch_options(options.interval_s, options.interval_s, None)
    if options.window is not None and not 1 <= options.window <= 100:
        raise NetprobeError(f"--window {options.window}: use 1 to 100 cycles")
    if options.history:  # open (create, migrate) it now: a bad path must fail at start
        from netprobe.history import connect

        connect(options.history).close()
    topology = load_topology(str(config_path))
    state = ServeState(topology, str(config_path), options)
    server = open_server(state, host, port)
    try:
        if netns:
            from netprobe.lab.netns import enter_netns

            enter_netns(netns)
    except BaseException:
        server.server_close()
        raise
    where = f" in network namespace {netns}" if netns else ""
    print(f"netprobe serve: vantage {topology.vantage}{where}, probing every "
          f"{options.interval_s:g} s, listening on {server_url(server)}", file=sys.stderr,
          flush=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        # SIGHUP too (a dropped session): every stop signal ends serving cleanly
        with loop_stops_on_signals(loop, stop.set):
            await serve_forever(state, server, stop)

    asyncio.run(main())
    print("netprobe serve: stopped", file=sys.stderr, flush=True)
    return 0


__all__ = ["ServeOptions", "ServeState", "parse_listen", "pool_results", "report_from_window",
           "select_report", "selection", "serve_command", "serve_forever"]
