"""Container metrics, computed with the ``docker stats`` formulas.

Per cycle: one list call to the Engine API, then for every running container a stats sample and,
only when needed, an inspect call (restart count, first process, network mode). The sample comes
from the host's cgroup filesystem when it is visible (agent.cgroup_stats: same inputs as the
daemon, no daemon CPU), otherwise from the Engine API's stats endpoint, fetched concurrently
(bounded pool, per-call timeout). What CPU % is computed against is agent.cpu_baseline's policy;
turning the Engine's JSON into values is agent.engine_api's. This class holds the connection, the
choice of source per container, the fan-out, and what it remembers between cycles.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import docker
import requests
from docker.errors import DockerException, NotFound
from pydantic import ValidationError

from agent import cpu_baseline, docker_stats
from agent.cgroup_stats import CgroupReader
from agent.cpu_baseline import CpuStats, SystemReading
from agent.docker_stats import EngineStats
from agent.engine_api import Details, Listed, api_tuple, container_metrics, short_reason
from agent.problems import Problems
from common.cli import RateLimitedLog
from contract.models import ContainerMetrics

log = logging.getLogger(__name__)

#: API 1.44 (Engine 25) answers one-shot stats directly instead of waiting for the collector tick.
FAST_ONE_SHOT_API = (1, 44)
ONE_SHOT_API = (1, 41)
#: Re-inspect a container at least this often (restart count), even with no sign of change.
INSPECT_MAX_AGE = 60.0
#: Worker threads. Engine >= 25 answers one-shot stats at once (with cgroup files, 2 suffice for
#: the inspects); older engines answer at their next 1 s tick, so every call must be in flight.
CGROUP_POOL = 2
NARROW_POOL = 8
WIDE_POOL = 128
LIST_ATTEMPTS = 2
LIST_RETRY_WAIT = 0.5

_TRANSIENT = (requests.ConnectionError, requests.Timeout, DockerException)

ClientFactory = Callable[[int, int], docker.DockerClient]


def default_client_factory(timeout: int, pool: int) -> docker.DockerClient:
    """A client for the endpoint DOCKER_HOST names (the local socket by default)."""
    return docker.from_env(timeout=timeout, max_pool_size=pool)


@dataclass(slots=True)
class _Known:
    """What the agent remembers of one container between cycles."""

    cpu_stats: CpuStats
    state: str
    health: str | None
    details: Details


@dataclass(slots=True)
class _Result:
    container_id: str
    metrics: ContainerMetrics | None = None
    known: _Known | None = None
    error: str | None = None
    from_cgroup: bool = False


class ContainerCollector:
    """Collects ContainerMetrics for every running container; survives a missing daemon."""

    def __init__(
        self,
        timeout: int = 4,
        concurrency: int = 0,
        client_factory: ClientFactory = default_client_factory,
        cgroups: CgroupReader | None = None,
        problems: Problems | None = None,
    ) -> None:
        self.problems = problems if problems is not None else Problems()
        self._timeout = timeout
        self._cgroups = cgroups
        self._concurrency_setting = concurrency
        self._client_factory = client_factory
        self._client: docker.DockerClient | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._api: tuple[int, int] = (0, 0)
        self._known: dict[str, _Known] = {}
        self._last_cycle: SystemReading | None = None
        self._reachable: bool | None = None
        self._sources: tuple[bool, bool] = (False, False)  # (any from cgroup files, any through the API)
        self._lock = threading.Lock()
        self._warn = RateLimitedLog(log, period=300.0)

    # -- connection ---------------------------------------------------------------------------

    def _connect(self) -> docker.DockerClient:
        if self._client is None:
            # Connections and worker threads are created only as calls need them, so the client
            # is sized for the widest case and the pool's width decided once the API version is known.
            client = self._client_factory(self._timeout, max(WIDE_POOL, self._concurrency_setting))
            self._api = api_tuple(client.api.api_version)
            fast = self._api >= FAST_ONE_SHOT_API
            if self._cgroups is not None:  # the pool serves inspects, and stats of any container read through the API
                automatic = CGROUP_POOL if fast else NARROW_POOL
            else:
                automatic = NARROW_POOL if fast else WIDE_POOL
            width = self._concurrency_setting or automatic
            self._client = client
            self._pool = ThreadPoolExecutor(max_workers=width, thread_name_prefix="otto-docker")
        return self._client

    def _disconnect(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._client, self._pool = None, None

    def close(self) -> None:
        """Release the Docker connection and the worker threads."""
        self._disconnect()

    def _list_running(self) -> list[dict[str, Any]]:
        """The list call, tried twice (a fresh connection after half a second) before giving up.

        Two attempts in a loop rather than tenacity: importing tenacity brings asyncio with it,
        1.9 MiB of resident memory on the 512 MB Pi Zero this agent must fit.
        """
        for attempt in range(LIST_ATTEMPTS):
            try:
                return list(self._connect().api.containers())
            except _TRANSIENT:
                self._disconnect()
                if attempt == LIST_ATTEMPTS - 1:
                    raise
                time.sleep(LIST_RETRY_WAIT)
        raise AssertionError("unreachable")  # pragma: no cover

    def _set_reachable(self, reachable: bool, reason: str = "") -> None:
        if reachable and self._reachable is False:
            log.info("docker daemon reachable again (API %d.%d)", *self._api)
        elif not reachable and self._reachable is not False:
            log.warning("docker daemon unreachable: %s; container metrics paused, retrying every cycle", reason)
        self._reachable = reachable

    # -- collection ---------------------------------------------------------------------------

    def prime(self) -> None:
        """Take a baseline sample of every container (one-shot, no waiting) without reporting it."""
        with self._lock:
            self._collect(priming=True)

    def collect(self) -> tuple[list[ContainerMetrics], str | None]:
        """Metrics of every running container, and why the list is empty or partial (None if fine)."""
        with self._lock:
            return self._collect(priming=False)

    def _collect(self, priming: bool) -> tuple[list[ContainerMetrics], str | None]:
        # With cgroups the system CPU is read first: a container missing from the list below
        # started after this reading, so next cycle zero usage at this reading is its exact baseline.
        # (Each sample reads the system CPU again, together with the container's usage.)
        system_read_at = time.time()
        system_ns = self._cgroups.system_cpu()[0] if self._cgroups is not None else 0
        try:
            listed = self._list_running()
        except _TRANSIENT as exc:
            reason = short_reason(exc)
            if "Permission denied" in reason:
                reason += (
                    " (the agent needs the socket's group: start it as the Compose files do, as root with"
                    " cap_add SETUID SETGID SETPCAP, or add --group-add $(stat -c %g /var/run/docker.sock))"
                )
            self._set_reachable(False, reason)
            self._known.clear()
            self._last_cycle = None
            return [], f"docker daemon unreachable: {reason}"
        self._set_reachable(True)

        assert self._pool is not None
        # Containers whose cgroup is known and need no inspect are read right here; only those
        # needing the API (inspect, or stats without a cgroup) go to the worker pool.
        planned: list[tuple[Listed, bool, bool]] = []  # (container, needs inspect, readable here)
        now = time.monotonic()
        for container in self._parse_listed(listed):
            previous = self._known.get(container.container_id)
            inspect = _needs_inspect(previous, container, now)
            planned.append(
                (container, inspect, previous is not None and previous.details.cgroup is not None and not inspect)
            )
        sampled = {c.container_id: self._sample(c, inspect, priming) for c, inspect, here in planned if here}
        remote = [(c, inspect) for c, inspect, here in planned if not here]
        sampled.update(
            zip(
                (c.container_id for c, _ in remote),
                self._pool.map(lambda job: self._sample(job[0], job[1], priming), remote),
                strict=True,
            )
        )
        results = [sampled[c.container_id] for c, _, _ in planned]
        metrics = [r.metrics for r in results if r.metrics is not None]
        known: dict[str, _Known] = {}
        for r in results:
            remembered = r.known if r.error is None else self._known.get(r.container_id)
            if remembered is not None:
                known[r.container_id] = remembered
        self._known = known
        if self._cgroups is not None:
            self._last_cycle = SystemReading(system_read_at, system_ns)
        else:
            # The daemon read the system CPU for each reply: take the moment after the last one.
            systems = [int(k.cpu_stats.get("system_cpu_usage") or 0) for k in self._known.values()]
            self._last_cycle = SystemReading(time.time(), max(systems)) if systems else None

        self._log_sources(results)
        errors = [r.error for r in results if r.error]
        if not errors:
            return metrics, None
        summary = f"stats unavailable for {len(errors)} of {len(listed)} containers: {sorted(set(errors))[0]}"
        self._warn.warning("stats", "%s", summary)
        return metrics, summary

    def _log_sources(self, results: list[_Result]) -> None:
        """One line when where the figures come from changes (all cgroup files, all API, or both)."""
        measured = [r for r in results if r.metrics is not None]
        from_cgroup = sum(1 for r in measured if r.from_cgroup)
        sources = (from_cgroup > 0, from_cgroup < len(measured))
        if measured and sources != self._sources:
            self._sources = sources
            version = f"cgroup v{self._cgroups.version} files" if self._cgroups is not None else "cgroup files"
            log.info(
                "container stats: %d from %s, %d through the Engine API %d.%d",
                from_cgroup,
                version,
                len(measured) - from_cgroup,
                *self._api,
            )

    def _parse_listed(self, listed: list[dict[str, Any]]) -> list[Listed]:
        """The list reply's entries; one the agent cannot read is skipped and counted, not fatal."""
        parsed = []
        for entry in listed:
            try:
                parsed.append(Listed.parse(entry))
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                self.problems.count("container_skipped", f"unreadable list entry: {type(exc).__name__}: {exc}")
        return parsed

    def _inspect(self, api: docker.APIClient, container_id: str) -> Details:
        details = Details.parse(api.inspect_container(container_id), inspected_at=time.monotonic())
        if self._cgroups is None or details.pid <= 0:
            return details
        return replace(details, cgroup=self._cgroups.locate(container_id, details.pid, details.cgroup_parent))

    def _sample(self, container: Listed, inspect: bool, priming: bool) -> _Result:
        """One container's figures; never raises (whatever goes wrong is that container's error)."""
        try:
            return self._sample_unguarded(container, inspect, priming)
        except ValidationError as exc:  # figures the contract refuses and the problems rule cannot mend
            self.problems.count("container_skipped", f"{container.name[:80]!r}: {str(exc).splitlines()[0]}")
            return _Result(container.container_id, error="figures refused by the contract")
        except Exception as exc:
            self.problems.count("container_skipped", f"{container.name[:80]!r}: {exc}", with_traceback=True)
            return _Result(container.container_id, error=f"{type(exc).__name__}: {short_reason(exc)}")

    def _sample_unguarded(self, container: Listed, inspect: bool, priming: bool) -> _Result:
        container_id = container.container_id
        known = self._known.get(container_id)
        api = self._client.api if self._client is not None else None
        if api is None:
            return _Result(container_id, error="docker client closed")
        from_cgroup = False
        try:
            details = self._inspect(api, container_id) if inspect or known is None else known.details
            baseline = cpu_baseline.baseline(known.cpu_stats if known else None, details.started_at, self._last_cycle)
            stats: EngineStats | None = None
            if self._cgroups is not None and details.cgroup is not None and (priming or baseline is not None):
                try:
                    stats = self._cgroups.read(details.cgroup, details.pid, details.host_network)
                    from_cgroup = True
                except (OSError, ValueError, KeyError):
                    # Stopped, restarted or moved: the API answers this time, inspect looks again next cycle.
                    details = replace(details, cgroup=None, inspected_at=0.0)
            if stats is None:
                use_one_shot = self._api >= ONE_SHOT_API and (priming or baseline is not None)
                stats = api.stats(container_id, stream=False, one_shot=True if use_one_shot else None)
        except (NotFound, requests.JSONDecodeError):
            # Removed between the list and now (a container being torn down can also answer an
            # empty body): skip it quietly.
            return _Result(container_id)
        except requests.Timeout:
            return _Result(container_id, error="timeout")
        except (requests.RequestException, DockerException) as exc:
            return _Result(container_id, error=short_reason(exc))

        cpu_stats = stats.get("cpu_stats") or {}
        sampled = docker_stats.has_sample(stats)
        rebased = cpu_baseline.rebase_after_restart(baseline, cpu_stats) if sampled and baseline is not None else None
        if rebased is not None:
            baseline = rebased
            details = replace(details, inspected_at=0.0)  # a new first process: look again next cycle
        figures = docker_stats.figures(stats, baseline)
        metrics = container_metrics(container, details.restart_count, figures, self.problems, details.started_at)
        remembered = _Known(cpu_stats, container.state, container.health, details) if sampled else None
        return _Result(container_id, metrics=metrics, known=remembered, from_cgroup=from_cgroup)


def _needs_inspect(known: _Known | None, container: Listed, now: float) -> bool:
    """Inspect again on a sign of change (state, health) and at least every INSPECT_MAX_AGE seconds."""
    return (
        known is None
        or known.state != container.state
        or known.health != container.health
        or now - known.details.inspected_at > INSPECT_MAX_AGE
    )
