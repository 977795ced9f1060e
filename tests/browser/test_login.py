"""The login in a real browser: the form on any page, the cookie's flags as Chromium keeps them, log out."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.support.broker import start_broker
from tests.support.browser import CHROMIUM, FLAGS, require_browser, watched
from tests.support.docker_gate import require_docker
from tests.support.subscriber_process import SubscriberProcess

pytestmark = [pytest.mark.docker, pytest.mark.browser]

PASSWORD = "a long enough admin password"


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SubscriberProcess]:
    require_docker()
    require_browser()
    work = tmp_path_factory.mktemp("login")
    (work / "admin.password").write_text(PASSWORD)
    with start_broker(work / "broker", nodes=["node-a"]) as broker:
        subscriber = SubscriberProcess(broker, work, auth="true", admin_password_file=str(work / "admin.password"))
        subscriber.start()
        try:
            yield subscriber
        finally:
            subscriber.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    require_browser()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        launched.close()


def test_log_in_from_a_deep_link_with_a_strict_http_only_cookie_then_log_out(
    browser: Browser, locked: SubscriberProcess
) -> None:
    base = f"http://127.0.0.1:{locked.port}"
    context = browser.new_context()
    page = context.new_page()
    response = page.goto(f"{base}/?sort=cpu")
    assert response is not None
    assert response.status == 401
    page.fill("#password", "not it")
    page.click("button[type=submit]")
    assert page.locator(".login-error").inner_text() == "Wrong password."
    with watched(page, base) as watch:
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/?sort=cpu")  # back where it was going
        page.wait_for_function("document.querySelector('#conn').textContent !== 'connecting…'")  # the live stream
        [cookie] = [c for c in context.cookies() if c["name"] == "otto_session"]
        assert cookie["httpOnly"] is True
        assert cookie["sameSite"] == "Strict"
        assert cookie["secure"] is False  # plain HTTP; Secure behind HTTPS (test_api_access)
        assert "otto_session" not in page.evaluate("document.cookie")  # scripts cannot read it
        page.wait_for_selector("#fleet")
        page.click("form.logout button")
        page.wait_for_url(f"{base}/login")
    watch.assert_clean()
    assert [c for c in context.cookies() if c["name"] == "otto_session"] == []
    assert page.goto(base) is not None
    assert page.locator("#password").count() == 1  # locked again
    context.close()
