"""The login in a real browser: the form on any page, the cookie's flags as Chromium keeps them, log out."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect

from tests.support.broker import start_broker
from tests.support.browser import require_browser, watched
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


def test_log_in_from_a_deep_link_with_a_strict_http_only_cookie_then_log_out(
    browser: Browser, locked: SubscriberProcess
) -> None:
    base = f"http://127.0.0.1:{locked.port}"
    context = browser.new_context()
    page = context.new_page()
    refused: list[str] = []
    page.on("response", lambda r: refused.append(r.url) if r.status == 401 else None)
    with watched(page, base) as watch:
        response = page.goto(f"{base}/?sort=cpu")
        assert response is not None
        assert response.status == 401
        page.fill("#password", "not it")
        page.click("button[type=submit]")
        assert page.locator(".login-error").inner_text() == "Wrong password."
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/?sort=cpu")  # back where it was going
        expect(page.locator("#conn")).to_have_text("live")
        [cookie] = [c for c in context.cookies() if c["name"] == "otto_session"]
        assert cookie["httpOnly"] is True
        assert cookie["sameSite"] == "Strict"
        assert cookie["secure"] is False  # plain HTTP; Secure behind HTTPS (test_api_access)
        assert "otto_session" not in page.evaluate("document.cookie")  # scripts cannot read it
        page.wait_for_selector("#fleet")
    # Only the two login pages were refused: the login page asks for nothing the gate refuses (no
    # favicon), and nothing is refused once logged in.
    assert refused == [f"{base}/?sort=cpu", f"{base}/login"]
    watch.assert_clean(refused)
    page.click("form.logout button")
    page.wait_for_url(f"{base}/login")
    assert [c for c in context.cookies() if c["name"] == "otto_session"] == []
    assert page.goto(base) is not None
    assert page.locator("#password").count() == 1  # locked again
    context.close()


def test_an_open_page_goes_to_the_login_when_its_session_ends_elsewhere(
    browser: Browser, locked: SubscriberProcess
) -> None:
    """Logged out in another tab: the live stream ends within its recheck, and the page asks for the login."""
    base = f"http://127.0.0.1:{locked.port}"
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{base}/login?next=/%3Fsort%3Dmemory")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("#conn")).to_have_text("live")
    other = context.new_page()  # the same browser's other tab: the same cookie
    other.goto(base)
    other.click("form.logout button")
    page.wait_for_url(f"{base}/login?next=%2F%3Fsort%3Dmemory", timeout=30_000)
    assert page.locator("#password").count() == 1
    context.close()
