"""The admin in a real browser: Debian's Chromium driven by Playwright against the live server.

Staff log in through the admin's own login form and do what support does: find a user by email,
read the balance and ledger, grant credits with a reason, look at a subscription and a Gmail
connection (tokens masked), quarantined KV records and a kvmigrate run. A non-staff user gets no
admin. Every screen is saved as a PNG under test-output/screenshots/.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.liveserver import OUTPUT, LiveServer

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = OUTPUT / "screenshots"
VIEWPORT = {"width": 1400, "height": 900}  # a support desk's laptop screen


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install -y chromium` (.ci/run does it)")
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def shot(page, name: str) -> Path:
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def log_in(page, server: LiveServer, user: dict) -> None:
    page.goto(f"{server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", user["email"])
    page.fill("#id_password", user["password"])
    page.click("input[type=submit]")
    page.wait_for_load_state()


@pytest.fixture(scope="module")
def staff_page(browser, outside_server: LiveServer, seed) -> Iterator:
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    context.set_default_timeout(15_000)
    page = context.new_page()
    stylesheets: list = []
    page.on("response", lambda r: stylesheets.append(r) if r.request.resource_type == "stylesheet" else None)
    log_in(page, outside_server, seed["staff"])
    page.stylesheets = stylesheets
    try:
        yield page
    finally:
        context.close()


def test_staff_log_in_through_the_admin_form_with_its_styles(staff_page, outside_server: LiveServer):
    page = staff_page
    assert page.url == f"{outside_server.url}/admin/"
    assert page.locator("#site-name").is_visible()
    assert page.get_by_role("link", name="Credit accounts").is_visible()
    shot(page, "01-admin-index")
    # The admin's CSS came from WhiteNoise under gunicorn with DEBUG off, and the page uses it.
    assert page.stylesheets, "no stylesheet was loaded"
    for response in page.stylesheets:
        assert response.status == 200, response.url
        assert response.headers["content-type"].startswith("text/css"), response.url
    header_bg = page.eval_on_selector("#header", "el => getComputedStyle(el).backgroundColor")
    assert header_bg not in ("rgba(0, 0, 0, 0)", "transparent"), "the admin header is unstyled"


def _open_account(page, server: LiveServer, email: str) -> None:
    page.goto(f"{server.url}/admin/credits/creditaccount/")
    page.fill("#searchbar", email)
    page.press("#searchbar", "Enter")
    page.wait_for_load_state()
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1, page.content()
    assert email in rows.first.inner_text()
    shot(page, "02-credit-accounts-search")
    rows.first.locator("a").first.click()
    page.wait_for_load_state()


def number(text: str) -> int:
    """A number as the admin shows it (thousands separators)."""
    return int(text.replace(",", "").strip())


def _balance(page) -> int:
    return number(page.locator(".field-balance .readonly").inner_text())


def test_find_a_user_by_email_and_see_balance_and_ledger(staff_page, outside_server: LiveServer, seed):
    page = staff_page
    _open_account(page, outside_server, seed["customer"]["email"])
    assert seed["customer"]["email"] in page.locator(".field-user").inner_text()
    balance = _balance(page)
    ledger = page.locator("table.ledger tbody tr")
    reasons = ledger.all_inner_texts()
    assert any("e2e: first purchase" in r for r in reasons), reasons
    assert any("e2e: welcome bonus" in r for r in reasons), reasons
    # Newest first: the top row's balance_after is the balance shown.
    assert number(ledger.first.locator("td").nth(3).inner_text()) == balance
    shot(page, "03-credit-account-ledger")


def test_grant_credits_with_a_reason_and_see_the_new_row(staff_page, outside_server: LiveServer, seed):
    page = staff_page
    _open_account(page, outside_server, seed["customer"]["email"])
    before = _balance(page)
    page.get_by_role("link", name="Grant or adjust credits…").click()
    page.wait_for_load_state()
    assert number(page.locator("#current-balance").inner_text()) == before
    reason = f"support ticket {uuid.uuid4().hex[:8]} (browser test)"
    page.select_option("#id_kind", "bonus")
    page.fill("#id_amount", "250")
    page.fill("#id_reason", reason)
    shot(page, "04-grant-form")
    page.click("input[type=submit][value=Record]")
    page.wait_for_load_state()
    message = page.locator("ul.messagelist li.success").inner_text()
    assert f"+250 credits recorded; balance is now {before + 250:,}" in message
    assert _balance(page) == before + 250
    newest = page.locator("table.ledger tbody tr").first.inner_text()
    assert reason in newest and "+250" in newest and "bonus" in newest
    shot(page, "05-grant-recorded")


def test_a_subscription_in_the_admin(staff_page, outside_server: LiveServer, seed):
    page = staff_page
    page.goto(f"{outside_server.url}/admin/billing/subscription/?q={seed['customer']['email']}")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1
    row = rows.first.inner_text()
    assert seed["customer"]["email"] in row and "ugly-duckling" in row and "active" in row.lower()
    shot(page, "06-subscriptions")
    rows.first.locator("a").first.click()
    page.wait_for_load_state()
    assert seed["subscription"]["subscription_id"] in page.content()
    shot(page, "07-subscription")


def test_a_gmail_connection_with_its_tokens_masked(staff_page, outside_server: LiveServer, seed):
    page = staff_page
    secrets = (seed["gmail"]["access_token"], seed["gmail"]["refresh_token"])
    page.goto(f"{outside_server.url}/admin/gmail/gmailtoken/?q={seed['customer']['email']}")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1 and seed["gmail"]["email"] in rows.first.inner_text()
    html = page.content()
    assert not any(secret in html for secret in secrets)
    shot(page, "08-gmail-connections")
    rows.first.locator("a").first.click()
    page.wait_for_load_state()
    assert "•••• (encrypted)" in page.locator(".field-tokens").inner_text()
    html = page.content()
    assert not any(secret in html for secret in secrets), "a plaintext token is in the page"
    assert not re.search(r"gAAAAA[\w-]{20,}", html), "a Fernet ciphertext is in the page"
    shot(page, "09-gmail-connection")


def test_quarantined_records_and_a_kvmigrate_run(staff_page, outside_server: LiveServer, seed):
    page = staff_page
    migration = seed["migration"]
    page.goto(f"{outside_server.url}/admin/kvmigrate/quarantinedrecord/?q={migration['quarantined_key']}")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1
    row = rows.first.inner_text()
    assert migration["quarantined_key"] in row and "bad_json" in row and f"run {migration['run_id']}" in row
    shot(page, "10-quarantined-records")
    rows.first.locator("a").first.click()
    page.wait_for_load_state()
    assert migration["quarantined_raw"] in page.locator(".field-raw_full pre").inner_text()
    shot(page, "11-quarantined-record")

    # A quarantined Gmail token record: its tokens stay secret in the list and on its page.
    page.goto(
        f"{outside_server.url}/admin/kvmigrate/quarantinedrecord/?q={migration['quarantined_token_key']}"
    )
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1
    assert not any(token in page.content() for token in migration["quarantined_tokens"])
    rows.first.locator("a").first.click()
    page.wait_for_load_state()
    html = page.content()
    assert not any(token in html for token in migration["quarantined_tokens"])
    assert not re.search(r"gAAAAA[\w-]{20,}", html), "a Fernet ciphertext is in the page"
    assert "encrypted: holds OAuth tokens" in page.locator(".field-raw_full").inner_text()
    shot(page, "12-quarantined-token-record")

    page.goto(f"{outside_server.url}/admin/kvmigrate/migrationrun/")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 1
    run = rows.first.inner_text().lower()
    assert "migrate" in run and "attention" in run and "kv-export.jsonl" in run
    shot(page, "13-kvmigrate-runs")
    rows.first.locator("a").first.click()
    page.wait_for_load_state()
    counts = page.locator(".field-counts_table table").inner_text()
    assert "credits" in counts and "quarantined" in counts
    shot(page, "14-kvmigrate-run")


def test_a_non_staff_user_gets_no_admin(browser, outside_server: LiveServer, seed):
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    try:
        log_in(page, outside_server, seed["member"])
        assert "/admin/login/" in page.url
        error = page.locator(".errornote").inner_text()
        assert "staff account" in error
        shot(page, "15-non-staff-refused")
        page.goto(f"{outside_server.url}/admin/credits/creditaccount/")
        assert "/admin/login/" in page.url
        assert page.locator("#result_list").count() == 0
    finally:
        context.close()


# --- the staff console ---------------------------------------------------------------------------
def test_the_dashboard_is_the_admin_home(staff_page, outside_server: LiveServer, seed):
    page = staff_page
    page.goto(f"{outside_server.url}/admin/")
    panels = page.locator("#dashboard-panels .console-panel")
    titles = [t.strip() for t in panels.locator("h3").all_inner_texts()]
    assert titles[:4] == ["KV migration", "KV mirror lag", "Stripe webhook events", "Blocked accounts"], (
        titles
    )
    migration = page.locator('[data-panel="kv-migration"]').inner_text()
    assert "migrate attention" in migration and "quarantined open" in migration
    shot(page, "16-dashboard")


def test_find_a_customer_by_email_and_see_them_whole(staff_page, outside_server: LiveServer, seed):
    page = staff_page
    customer = seed["customer"]
    page.goto(f"{outside_server.url}/admin/")
    page.fill("#customer-q", customer["email"].upper())
    page.press("#customer-q", "Enter")
    page.wait_for_load_state()
    assert page.url == f"{outside_server.url}/admin/console/customers/{customer['id']}/"
    assert page.locator("h1").inner_text() == customer["email"]
    # Credits: balance and available agree with the credit account's own page, with separators.
    balance = number(page.locator("#balance").inner_text())
    assert balance > 1000 and "," in page.locator("#balance").inner_text()
    assert number(page.locator("#available").inner_text()) == balance
    purchased, used = (
        number(page.locator("#total-purchased").inner_text()),
        number(page.locator("#total-used").inner_text()),
    )
    assert purchased >= 1200 + 5000 and used >= 160
    assert page.locator("#blocked").inner_text() == "no"
    # Subscription: plan, status, the current period in the one date format, cancelling.
    assert page.locator("#plan").inner_text() == "Ugly Duckling (ugly-duckling)"
    assert page.locator("#status").inner_text() == "active"
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d – \d{4}-\d\d-\d\d \d\d:\d\d", page.locator("#period").inner_text()
    )
    assert page.locator("#cancelling").inner_text() == "no"
    # Gmail: the address and masked tokens, never a token.
    assert page.locator("#gmail-address").inner_text() == seed["gmail"]["email"]
    assert page.locator("#gmail-tokens").inner_text() == "•••• (encrypted)"
    html = page.content()
    assert seed["gmail"]["access_token"] not in html and seed["gmail"]["refresh_token"] not in html
    assert not re.search(r"gAAAAA[\w-]{20,}", html)
    # Flags, the latest ledger rows (newest first), links to each list and the grant action.
    assert page.locator("#customer-flags").is_visible()
    ledger = page.locator("#customer-ledger tbody tr").all_inner_texts()
    assert any("e2e: welcome bonus" in row for row in ledger) and any(
        "e2e: first purchase" in row for row in ledger
    )
    assert (
        number(page.locator("#customer-ledger tbody tr").first.locator("td").nth(3).inner_text()) == balance
    )
    links = page.locator("#customer-links a").all_inner_texts()
    assert links == [
        "user",
        "credit account",
        "ledger",
        "subscription",
        "gmail connection",
        "flags",
        "holds",
    ], links
    assert page.locator("#grant-link").is_visible()
    shot(page, "17-customer-page")
    page.locator("#customer-links a", has_text="subscription").click()
    page.wait_for_load_state()
    assert page.locator("#result_list tbody tr").count() == 1
    page.go_back()
    page.click("#grant-link")
    page.wait_for_load_state()
    assert number(page.locator("#current-balance").inner_text()) == balance


def test_the_report_with_n_100_and_its_csv_export(staff_page, outside_server: LiveServer, seed):
    page = staff_page
    page.goto(f"{outside_server.url}/admin/")
    page.click("#report-link")
    page.wait_for_load_state()
    page.fill("#id_min_credits", "100")
    page.click("#report-form input[type=submit]")
    page.wait_for_load_state()
    assert "min_credits=100" in page.url
    rows = page.locator("#report-rows tbody tr").all_inner_texts()
    assert any(seed["customer"]["email"] in row and "ugly-duckling" in row for row in rows), rows
    assert not any(seed["member"]["email"] in row for row in rows)  # credits, but no subscription
    shot(page, "18-report")
    with page.expect_download() as info:
        page.click("#csv-export")
    download = info.value
    assert download.suggested_filename.startswith("active-with-credits-above-100-")
    lines = Path(download.path()).read_text().splitlines()
    assert lines[0] == "user_id,email,balance,plan,status,current_period_end"
    assert any(
        line.startswith(f"{seed['customer']['id']},{seed['customer']['email']},") for line in lines[1:]
    )
    assert len(lines) - 1 == len(rows)


def _changelists(page, server: LiveServer) -> list[str]:
    page.goto(f"{server.url}/admin/")
    hrefs = page.eval_on_selector_all("#content-main .app-list th[scope=row] a, #content-main table th a",
                                      "els => els.map(e => e.getAttribute('href'))")  # fmt: skip
    return sorted({h for h in hrefs if h and h.startswith("/admin/") and h.count("/") == 4})


_CLIPPING = """() => {
    // The page itself, and every box that hides or scrolls what does not fit (a list's .results).
    const selector = '.results, #changelist, #changelist *, #content-main *';
    // Screen-reader-only text is a 1-pixel box by design: not a clipped column.
    const clips = el => ['auto', 'scroll', 'hidden'].includes(getComputedStyle(el).overflowX)
        && !el.classList.contains('visually-hidden');
    const root = document.documentElement;
    const boxes = [root, ...[...document.querySelectorAll(selector)].filter(clips)];
    return boxes.map(el => ({
        what: el.id || el.className || el.tagName, scroll: el.scrollWidth, client: el.clientWidth,
    }));
}"""


def _not_clipped(page) -> list[dict]:
    boxes = page.evaluate(_CLIPPING)
    clipped = [b for b in boxes if b["scroll"] > b["client"]]
    assert not clipped, (page.url, clipped)
    return boxes


def test_no_list_is_clipped_at_1400_pixels(staff_page, outside_server: LiveServer, seed):
    page = staff_page
    lists = _changelists(page, outside_server)
    assert "/admin/credits/creditaccount/" in lists and "/admin/billing/subscription/" in lists, lists
    for href in lists:
        page.goto(f"{outside_server.url}{href}")
        page.wait_for_load_state()
        assert page.locator("#changelist").count() == 1, href
        boxes = _not_clipped(page)
        if page.locator("#result_list").count():  # an empty list has no table to measure
            assert any(b["what"] == "results" for b in boxes), (href, boxes)
        shot(page, "19-list-" + href.strip("/").replace("/", "-"))
    for href in (
        "/admin/",
        f"/admin/console/customers/{seed['customer']['id']}/",
        "/admin/console/reports/active-with-credits/?min_credits=0",
    ):
        page.goto(f"{outside_server.url}{href}")
        _not_clipped(page)


def test_the_api_docs_make_no_request_off_the_machine(browser, outside_server: LiveServer, seed):
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    # Nothing may leave; a request that tries is recorded, then refused (no network wait).
    context.route(re.compile(r"^(?!" + re.escape(outside_server.url) + r")"), lambda route: route.abort())
    try:
        log_in(page, outside_server, seed["staff"])
        page.goto(f"{outside_server.url}/api/docs/")
        page.wait_for_load_state("networkidle")
        shot(page, "20-api-docs")
        external = [
            url for url in requests if not url.startswith(outside_server.url) and not url.startswith("data:")
        ]
        assert not external, external
        assert any("/api/schema/" in url for url in requests), "the docs page never loaded the schema"
    finally:
        context.close()


def test_a_non_staff_user_gets_no_console(browser, outside_server: LiveServer, seed):
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    try:
        log_in(page, outside_server, seed["member"])
        for href in (
            f"/admin/console/customers/{seed['customer']['id']}/",
            "/admin/console/customers/?q=customer",
            "/admin/console/reports/active-with-credits/?min_credits=100&format=csv",
        ):
            response = page.goto(f"{outside_server.url}{href}")
            assert "/admin/login/" in page.url, href
            assert response.status == 200 and seed["customer"]["email"] not in page.content()
    finally:
        context.close()
