"""The dashboard in headless Chromium, against the real subscriber fed by real agents through Mosquitto.

One fleet for the module: two agents on this host (reading the real Docker Engine), a node whose
year of history was written through the real store and its tiers, and a node credential that
publishes hostile strings. Every page visit also checks that nothing was logged to the console
and that no request left the subscriber's origin.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import pytest
from playwright.sync_api import Browser, Page, expect

from contract import to_payload
from contract.topics import container_metrics_topic, events_topic, node_metrics_topic, status_topic
from tests.support.agent_process import AgentProcess
from tests.support.broker import Broker, start_broker
from tests.support.browser import Watch, require_browser, watched
from tests.support.docker_gate import require_docker
from tests.support.history import CONTAINERS, seed
from tests.support.load import LoadContainers, wait_until
from tests.support.messages import container, container_batch, event, node_metrics, status
from tests.support.mqtt import Publisher
from tests.support.subscriber_process import SubscriberProcess

pytestmark = [pytest.mark.docker, pytest.mark.browser, pytest.mark.slow]

AGENTS = ("pi-alpha", "pi-beta")
NODES = [*AGENTS, "pi-history", "pi-hostile"]
HOSTILE_NAME = '<img src=x onerror="window.__pwned=1">'
HOSTILE_IMAGE = '"><script>window.__pwned=2</script>'
HOSTILE_ERROR = "<b onmouseover=alert(1)>daemon</b>"
RANGES = ("1h", "6h", "24h", "7d", "30d", "1y")
CHARTS = ("cpu", "cores", "load", "memory", "disk", "network", "temperature", "agent", "lost", "ccpu", "cmem")
DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

# Pixels of a colour near the first series' stroke (#1f77b4), i.e. a line actually drawn.
COUNT_SERIES_PIXELS = """(id) => {
  const canvas = document.querySelector(`[data-chart="${id}"] canvas`);
  if (!canvas) return -1;
  const d = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) {
    const near = Math.abs(d[i] - 31) < 50 && Math.abs(d[i + 1] - 119) < 50 && Math.abs(d[i + 2] - 180) < 50;
    if (d[i + 3] > 100 && near) n++;
  }
  return n;
}"""


@dataclass
class Fleet:
    broker: Broker
    subscriber: SubscriberProcess
    agents: dict[str, AgentProcess]
    work: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.subscriber.port}"

    def summaries(self) -> dict[str, dict[str, Any]]:
        return {n["node_id"]: n for n in self.subscriber.get("/api/nodes")}


def publish_hostile(broker: Broker) -> None:
    publisher = Publisher(broker, "pi-hostile")
    now = datetime.now(UTC)
    publisher.publish(status_topic("pi-hostile"), to_payload(status("pi-hostile", at=now)), retain=True)
    publisher.publish(node_metrics_topic("pi-hostile"), to_payload(node_metrics("pi-hostile", at=now)))
    batch = container_batch(
        "pi-hostile", at=now, containers=[container(HOSTILE_NAME, image=HOSTILE_IMAGE, health="unhealthy")]
    ).model_copy(update={"error": HOSTILE_ERROR})
    publisher.publish(container_metrics_topic("pi-hostile"), to_payload(batch))
    died = event("die", HOSTILE_NAME, "pi-hostile", at=now, image=HOSTILE_IMAGE, exit_code=3)
    publisher.publish(events_topic("pi-hostile"), to_payload(died))
    publisher.close()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    require_docker()
    require_browser()
    work = tmp_path_factory.mktemp("dashboard")
    client = docker.from_env(timeout=60)
    load = LoadContainers(client)
    with start_broker(work / "broker", nodes=NODES) as broker:
        seed(work / "history.db", ["pi-history"], datetime.now(UTC)).close()
        load.run("web", "while true; do echo tick > /dev/null; sleep 0.2; done")
        subscriber = SubscriberProcess(broker, work).start()
        agents = {node: AgentProcess(broker, node, work) for node in AGENTS}
        try:
            publish_hostile(broker)
            fleet = Fleet(broker, subscriber, agents, work)
            wait_until(
                lambda: all(fleet.summaries().get(n, {}).get("containers") for n in (*AGENTS, "pi-hostile")), timeout=60
            )
            yield fleet
        finally:
            for agent in agents.values():
                agent.stop()
            subscriber.kill()
            load.close()
            client.close()


@dataclass
class Visit:
    page: Page
    watch: Watch


@pytest.fixture
def visit(browser: Browser, fleet: Fleet) -> Iterator[Visit]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    with watched(page, fleet.base) as watch:
        yield Visit(page, watch)
    context.close()
    watch.assert_clean()


def fleet_table(page: Page) -> dict[str, dict[str, str]]:
    return page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll("#fleet tbody tr")].map((tr) => [tr.dataset.node,
             Object.fromEntries([...tr.querySelectorAll("td")].map((td) => [td.dataset.col, td.innerText]))]))"""
    )  # type: ignore[no-any-return]


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} %"


def as_shown(summary: dict[str, Any]) -> dict[str, str]:
    """The overview's cells as the page should print them for one API summary."""
    shown = {
        "cpu_percent": pct(summary["cpu_percent"]),
        "memory_percent": pct(summary["memory_percent"]),
        "disk_percent": pct(summary["disk_percent"]),
        "cycles_lost_24h": str(summary["cycles_lost_24h"]),
    }
    if summary["containers"] is not None:
        shown["containers"] = f"{summary['containers_running']}/{summary['containers']}"
    return shown


def test_the_overview_shows_the_same_numbers_as_the_api(visit: Visit, fleet: Fleet) -> None:
    page = visit.page
    page.goto(fleet.base + "/")
    expect(page.locator("#fleet")).to_have_attribute("data-loaded", "true")
    for node in NODES:
        expect(page.locator(f'tr[data-node="{node}"]')).to_be_visible()
    mismatch: dict[str, Any] = {}
    for _ in range(30):  # agents publish every second: compare one moment, retrying until both agree
        api, table = fleet.summaries(), fleet_table(page)
        mismatch = {}
        for node in AGENTS:
            for column, text in as_shown(api[node]).items():
                got = table[node][column] if column != "containers" else table[node][column].split(" ")[0]
                if got != text:
                    mismatch[f"{node}.{column}"] = (got, text)
            if table[node]["status"].split()[0] != api[node]["status"]:
                mismatch[f"{node}.status"] = (table[node]["status"], api[node]["status"])
        if not mismatch:
            break
        time.sleep(0.3)
    assert mismatch == {}
    assert "MiB" in table["pi-alpha"]["agent_rss_mb"]  # the agent's own cost is shown
    assert table["pi-history"]["cycles_lost_24h"] not in ("0", "—")  # the seed lost one cycle in 400


def test_the_overview_updates_itself_and_filters_and_sorts_from_the_keyboard(visit: Visit, fleet: Fleet) -> None:
    page = visit.page
    page.goto(fleet.base + "/")
    cpu = page.locator('tr[data-node="pi-alpha"] td[data-col="cpu_percent"]')
    expect(cpu).not_to_have_text("—")
    seen = {cpu.inner_text()}
    deadline = time.monotonic() + 15
    while len(seen) < 2 and time.monotonic() < deadline:  # new figures arrive without a reload
        page.wait_for_timeout(500)
        seen.add(cpu.inner_text())
    assert len(seen) >= 2
    page.fill("#filter", "alpha")
    expect(page.locator("#fleet tbody tr")).to_have_count(1)
    page.fill("#filter", "")
    expect(page.locator("#fleet tbody tr")).to_have_count(len(NODES))
    header = page.locator('th[data-key="cpu_percent"] button')
    header.focus()
    page.keyboard.press("Enter")
    expect(page.locator('th[data-key="cpu_percent"]')).to_have_attribute("aria-sort", "descending")
    cpus = [float(t.split()[0]) for t in page.locator('td[data-col="cpu_percent"]').all_inner_texts() if t != "—"]
    assert cpus == sorted(cpus, reverse=True)


def test_the_node_page_draws_every_chart_for_every_range(visit: Visit, fleet: Fleet) -> None:
    page = visit.page
    page.goto(fleet.base + "/nodes/pi-history")
    expect(page.locator("#node-id")).to_have_text("pi-history")
    sources = {}
    for name in RANGES:
        page.get_by_role("button", name=name, exact=True).click()
        charts = page.locator("#charts")
        expect(charts).to_have_attribute("data-range", name)
        expect(charts).to_have_attribute("data-loading", "false", timeout=15_000)
        for chart in CHARTS:
            box = page.locator(f'[data-chart="{chart}"]')
            expect(box).to_have_attribute("data-state", "drawn")
            drawn = page.evaluate(COUNT_SERIES_PIXELS, chart)
            assert drawn > 20, f"{chart} at {name}: {drawn} pixels of its first series"
            assert 0 < int(box.get_attribute("data-points") or 0) <= 1600
        sources[name] = page.locator('[data-chart="cpu"]').get_attribute("data-source")
    assert sources["1h"] == "raw"
    assert sources["1y"] == "2h"
    assert page.url.endswith("#range=1y")  # the range is in the address: bookmarkable
    legend = page.locator('[data-chart="ccpu"] .u-legend').inner_text()
    assert all(name in legend for name in CONTAINERS)


def test_the_container_table_matches_the_latest_batch(visit: Visit, fleet: Fleet) -> None:
    page = visit.page
    page.goto(fleet.base + "/nodes/pi-alpha")
    expect(page.locator("main")).to_have_attribute("data-loaded", "true")
    mismatch: Any = None
    for _ in range(30):
        batch = fleet.subscriber.get("/api/nodes/pi-alpha")["containers"]["containers"]
        rows = page.evaluate(
            """() => [...document.querySelectorAll("#containers tbody tr")].map((tr) => [...tr.querySelectorAll("td")]
                 .map((td) => td.innerText))"""
        )
        expected = sorted(
            [c["container_name"], c["state"], c["health"] or "—", f"{c['cpu_percent']:.1f} %", str(c["pids"]),
             str(c["restart_count"]), c["image"]]
            for c in batch
        )  # fmt: skip
        shown = sorted([r[0], r[1], r[2], r[3], r[7], r[8], r[9]] for r in rows)
        mismatch = None if shown == expected else (shown, expected)
        if mismatch is None:
            break
        time.sleep(0.3)
    assert mismatch is None
    assert any(row[0].endswith("-web") for row in shown)  # the load container this test started


def test_strings_from_a_node_are_shown_as_text(visit: Visit, fleet: Fleet) -> None:
    page = visit.page
    page.goto(fleet.base + "/")
    expect(page.locator('tr[data-node="pi-hostile"]')).to_be_visible()
    page.goto(fleet.base + "/nodes/pi-hostile")
    expect(page.locator("#containers tbody tr td.name").first).to_have_text(HOSTILE_NAME)
    expect(page.locator("#containers tbody")).to_contain_text(HOSTILE_IMAGE)
    expect(page.locator("#containers-error")).to_have_text(f"Containers: {HOSTILE_ERROR}")
    assert page.evaluate("() => window.__pwned") is None
    assert page.locator("#containers img, #containers script, #containers-error b").count() == 0


def test_alerts_and_container_events_are_shown_as_they_happen(visit: Visit, fleet: Fleet) -> None:
    page = visit.page
    page.goto(fleet.base + "/")
    client = docker.from_env(timeout=60)
    name = f"otto-browser-exit-{int(time.time())}"
    try:
        client.containers.run("busybox:1.36", ["sh", "-c", "sleep 1; exit 3"], name=name, detach=True)
        alert = page.locator("#alerts li", has_text=f"pi-alpha / {name}")  # both agents watch this engine
        expect(alert).to_be_visible(timeout=15_000)
        expect(page.locator("#alerts li", has_text=f"pi-beta / {name}")).to_be_visible()
        expect(alert).to_contain_text("container exited")
        expect(alert).to_contain_text("exit code 3")
        expect(alert.locator("a")).to_have_attribute("href", "/nodes/pi-alpha")
        # The same alert on the node's page, with the events that led to it.
        page.goto(fleet.base + "/nodes/pi-alpha")
        expect(page.locator("#alerts li", has_text=name)).to_contain_text("exit code 3")
        die = page.locator('#events tbody tr[data-action="die"]', has_text=name)
        expect(die).to_contain_text("exit code 3", timeout=10_000)
        expect(page.locator('#events tbody tr[data-action="start"]', has_text=name)).to_have_count(1)
        api = fleet.subscriber.get("/api/alerts")
        assert any(a["container"] == name and a["rule"] == "container_exited" for a in api)
    finally:
        client.containers.get(name).remove(force=True)
        client.close()


def test_a_hostile_container_name_in_alerts_and_events_stays_text(visit: Visit, fleet: Fleet) -> None:
    page = visit.page
    page.goto(fleet.base + "/")
    expect(page.locator("#alerts li", has_text=HOSTILE_NAME)).to_be_visible(timeout=15_000)
    page.goto(fleet.base + "/nodes/pi-hostile")
    expect(page.locator("#events tbody tr td", has_text=HOSTILE_NAME).first).to_be_visible(timeout=10_000)
    expect(page.locator("#alerts li", has_text=HOSTILE_NAME)).to_be_visible()
    assert page.evaluate("() => window.__pwned") is None
    assert page.locator("#alerts img, #alerts script, #events img, #events script").count() == 0


def test_light_and_dark_follow_the_system_and_screenshots_for_the_docs(browser: Browser, fleet: Fleet) -> None:
    DOCS.mkdir(parents=True, exist_ok=True)
    shots = [
        ("overview.png", "/", {"width": 1400, "height": 700}, "light"),
        ("node.png", "/nodes/pi-history#range=7d", {"width": 1400, "height": 1800}, "light"),
        ("node-dark.png", "/nodes/pi-history#range=24h", {"width": 1400, "height": 900}, "dark"),
        ("phone.png", "/nodes/pi-history", {"width": 390, "height": 844}, "light"),
    ]
    backgrounds = {}
    for name, path, viewport, scheme in shots:
        context = browser.new_context(viewport=viewport, color_scheme=scheme, device_scale_factor=1)  # type: ignore[arg-type]
        page = context.new_page()
        with watched(page, fleet.base) as watch:
            page.goto(fleet.base + path)
            if path.startswith("/nodes"):
                expect(page.locator("#charts")).to_have_attribute("data-loading", "false", timeout=15_000)
                # Nothing sticks out sideways at a phone's width but the tables, which scroll.
                overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
                assert overflow <= 0, f"{name}: {overflow} px wider than the screen"
            else:
                expect(page.locator("#fleet")).to_have_attribute("data-loaded", "true")
            backgrounds[scheme] = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
            page.screenshot(path=str(DOCS / name), full_page=name != "node.png")
        context.close()
        watch.assert_clean()
    assert backgrounds["light"] != backgrounds["dark"]


def test_an_agent_killed_turns_offline_on_the_page_within_two_seconds(visit: Visit, fleet: Fleet) -> None:
    page = visit.page
    page.goto(fleet.base + "/")
    badge = page.locator('tr[data-node="pi-beta"] td[data-col="status"] .badge')
    expect(badge).to_have_text("online")
    fleet.agents["pi-beta"].signal(signal.SIGKILL)
    killed = time.monotonic()
    expect(badge).to_have_text("offline", timeout=5_000)
    took = time.monotonic() - killed
    assert took < 2.0, f"offline shown {took:.2f} s after the kill"
    page.goto(fleet.base + "/nodes/pi-beta")
    expect(page.locator("#status .badge")).to_have_text("offline")


def test_an_unknown_node_gets_a_plain_answer(visit: Visit, fleet: Fleet) -> None:
    page = visit.page
    page.goto(fleet.base + "/nodes/pi-nobody")
    expect(page.locator("[data-unknown]")).to_contain_text('No node called "pi-nobody"')
    # The one request that answered 404 is the point of this page; Chromium logs it as an error.
    assert [e for e in visit.watch.errors if "404" not in e] == []
    visit.watch.errors.clear()
