"""The staff console: customer page, report with CSV, dashboard, list columns and filters."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

import pytest
from django.test import Client
from django.utils import timezone

from accounts.tests.factories import UserFactory
from billing.models import Subscription, WebhookEvent
from credits import services as credit_services
from credits.models import CreditAccount
from cutover.models import KvOutbox
from gmail import services as gmail_services
from kvmigrate.models import MigrationRun, QuarantinedRecord
from notifications.models import UserNotification

pytestmark = pytest.mark.django_db

ACCESS, REFRESH = "ya29.console-test-access-token-abcdef", "1//console-test-refresh-token-xyz"


@pytest.fixture
def admin_client(staff_user):
    client = Client()
    client.force_login(staff_user)
    return client


@pytest.fixture
def customer(staff_user):
    user = UserFactory(email="dora@example.com", username="dora")
    credit_services.grant(user=user, amount=12_345, kind="purchase", reason="first pack")
    credit_services.deduct(user=user, operation="company_search")
    Subscription.objects.create(
        user=user,
        stripe_customer_id="cus_dora",
        stripe_subscription_id="sub_dora",
        status="active",
        plan_type="ugly-duckling",
        current_period_start=dt.datetime(2026, 11, 20, 8, 30, tzinfo=dt.UTC),
        current_period_end=dt.datetime(2026, 12, 20, 8, 30, tzinfo=dt.UTC),
        cancel_at_period_end=True,
    )
    gmail_services.store_tokens(
        user=user,
        access_token=ACCESS,
        refresh_token=REFRESH,
        expires_at=timezone.now() + dt.timedelta(hours=1),
        scopes=["https://www.googleapis.com/auth/gmail.modify"],
        email="dora.mail@gmail.com",
        display_name="Dora",
    )
    UserNotification.objects.create(user=user, kind="badge", notification_id=1)
    return user


def test_customer_page_shows_the_customer_whole(admin_client, customer):
    page = admin_client.get(f"/admin/console/customers/{customer.pk}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "<title>dora@example.com | fivedocks staff</title>" in html and "<h1>dora@example.com</h1>" in html
    assert re.search(r'id="balance">12,335<', html)  # thousands separators
    assert re.search(r'id="available">12,335<', html)
    assert re.search(r'id="total-purchased">12,345<', html)
    assert re.search(r'id="total-used">10<', html)
    assert re.search(r'id="blocked">no<', html)
    assert "Ugly Duckling (ugly-duckling)" in html and re.search(r'id="status">active<', html)
    assert "2026-11-20 08:30 – 2026-12-20 08:30" in html  # one date format
    assert "cancels at period end" in html
    assert "dora.mail@gmail.com" in html and "•••• (encrypted)" in html
    assert ACCESS not in html and REFRESH not in html and "gAAAAA" not in html
    assert "Badge:" in html
    ledger = html.split('id="customer-ledger"')[1]
    assert ledger.index("company_search") < ledger.index("first pack")  # newest first
    assert "+12,345" in ledger and "-10" in ledger
    for link in (
        f"/admin/accounts/user/{customer.pk}/change/",
        f"/admin/credits/creditaccount/{customer.pk}/change/",
        "/admin/credits/credittransaction/?q=dora%40example.com",
        "/admin/billing/subscription/?q=dora%40example.com",
        "/admin/gmail/gmailtoken/?q=dora%40example.com",
        "/admin/notifications/usernotification/?q=dora%40example.com",
        "/admin/credits/credithold/?q=dora%40example.com",
        f"/admin/credits/creditaccount/{customer.pk}/change-credits/",  # the grant/adjust form
    ):
        assert f'href="{link}"' in html, link


def test_open_holds_lower_the_available_credits(admin_client, customer):
    credit_services.open_hold(user=customer, idempotency_key="search-1", operation="full_search")
    html = admin_client.get(f"/admin/console/customers/{customer.pk}/").content.decode()
    assert re.search(r'id="balance">12,335<', html) and re.search(r'id="held">250<', html)
    assert re.search(r'id="available">12,085<', html)


def test_a_blocked_customer_has_nothing_available(admin_client, customer):
    CreditAccount.objects.filter(user=customer).update(is_blocked=True)
    html = admin_client.get(f"/admin/console/customers/{customer.pk}/").content.decode()
    assert re.search(r'id="available">0<', html) and "blocked</strong>" in html


def test_customer_search_by_email_opens_the_page_or_lists_matches(admin_client, customer):
    one = admin_client.get("/admin/console/customers/", {"q": "DORA@example.com"})
    assert one.status_code == 302 and one["Location"] == f"/admin/console/customers/{customer.pk}/"
    UserFactory(email="dora2@example.com")
    many = admin_client.get("/admin/console/customers/", {"q": "dora"})
    assert many.status_code == 200 and "dora2@example.com" in many.content.decode()
    none = admin_client.get("/admin/console/customers/", {"q": "nobody-at-all"})
    assert "No user matches" in none.content.decode()
    assert admin_client.get("/admin/console/customers/999999999/").status_code == 404


@pytest.fixture
def report_users():
    def subscriber(email: str, balance: int, status: str) -> None:
        user = UserFactory(email=email)
        if balance:
            credit_services.grant(user=user, amount=balance, reason="test")
        Subscription.objects.create(user=user, stripe_customer_id=f"cus_{email[:4]}", status=status)

    subscriber("rich@example.com", 5_000, "active")
    subscriber("trial@example.com", 101, "trialing")
    subscriber("edge@example.com", 100, "active")  # not above 100
    subscriber("late@example.com", 9_000, "past_due")
    subscriber("=cmd@example.com", 700, "active")  # a formula-looking email


def test_report_with_n_typed_in_and_its_csv(admin_client, report_users):
    page = admin_client.get("/admin/console/reports/active-with-credits/", {"min_credits": "100"})
    html = page.content.decode()
    assert page.status_code == 200 and "3 users" in html
    assert "rich@example.com" in html and "5,000" in html and "trial@example.com" in html
    assert "edge@example.com" not in html and "late@example.com" not in html
    export = admin_client.get(
        "/admin/console/reports/active-with-credits/", {"min_credits": "100", "format": "csv"}
    )
    assert export["Content-Type"].startswith("text/csv")
    assert "attachment" in export["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert rows[0] == ["user_id", "email", "balance", "plan", "status", "current_period_end"]
    assert [r[1] for r in rows[1:]] == ["rich@example.com", "'=cmd@example.com", "trial@example.com"]
    assert rows[1][2] == "5000"  # raw numbers in the file
    higher = admin_client.get("/admin/console/reports/active-with-credits/", {"min_credits": "1000"})
    assert "1 user." in higher.content.decode()


def test_report_refuses_a_bad_n(admin_client):
    page = admin_client.get("/admin/console/reports/active-with-credits/", {"min_credits": "lots"})
    assert page.status_code == 400 and "Enter a whole number" in page.content.decode()


def test_dashboard_is_the_admin_home_with_the_figures(admin_client, customer):
    run = MigrationRun.objects.create(
        mode="migrate", source="kv.jsonl", status="attention", finished_at=timezone.now(),
        counts={"credits": {"quarantined": 2, "mismatched": 3}},
    )  # fmt: skip
    QuarantinedRecord.objects.create(
        run=run, key="credits:x", fingerprint="f", reason_code="bad_json", reason="x"
    )
    stale = timezone.now() - dt.timedelta(seconds=125)
    KvOutbox.objects.create(key="user_credits:1", domain="credits", user_id=customer.pk, created_at=stale)
    for n, status in enumerate(["failed", "failed", "unmatched", "processed"]):
        WebhookEvent.objects.create(
            event_id=f"evt_{n}", type="invoice.paid", payload={}, created=timezone.now(), status=status
        )
    CreditAccount.objects.filter(user=customer).update(is_blocked=True)
    html = admin_client.get("/admin/").content.decode()
    panels = dict(re.findall(r'data-panel="([\w-]+)">.*?console-value">([^<]*)<', html, re.S))
    assert panels["kv-migration"] == "migrate attention"
    assert "1 quarantined open; 3 mismatched" in html
    assert (
        panels["kv-mirror-lag"].endswith(" s") and int(panels["kv-mirror-lag"][:-2].replace(",", "")) >= 125
    )
    assert panels["stripe-webhook-events"] == "3 need a look" and "2 failed; 1 unmatched" in html
    assert "/admin/billing/webhookevent/?status__in=failed,unmatched" in html
    assert admin_client.get("/admin/billing/webhookevent/?status__in=failed,unmatched").status_code == 200
    assert panels["blocked-accounts"] == "1"
    assert panels["open-credit-holds"] == "0"
    CreditAccount.objects.filter(user=customer).update(is_blocked=False)
    credit_services.open_hold(user=customer, idempotency_key="h1", amount=300)
    credit_services.open_hold(user=customer, idempotency_key="h2", amount=40)
    html = admin_client.get("/admin/").content.decode()
    panels = dict(re.findall(r'data-panel="([\w-]+)">.*?console-value">([^<]*)<', html, re.S))
    assert panels["open-credit-holds"] == "2" and "340 credits held" in html
    assert 'id="customer-q"' in html and "/admin/console/reports/active-with-credits/" in html
    assert "Credit accounts" in html  # the app list is still there


def test_credit_account_list_has_plan_status_and_a_typed_minimum(admin_client, customer, report_users):
    page = admin_client.get("/admin/credits/creditaccount/", {"min_credits": "5000"})
    body = page.content.decode().split("<tbody>")[1]
    assert "rich@example.com" in body and "late@example.com" in body and "dora@example.com" in body
    assert "trial@example.com" not in body
    assert "ugly-duckling" in body and "past_due" in body and "12,335" in body
    assert 'id="filter-min_credits"' in page.content.decode()
    by_status = admin_client.get(
        "/admin/credits/creditaccount/", {"user__subscription__status__exact": "trialing"}
    )
    assert "trial@example.com" in by_status.content.decode().split("<tbody>")[1]
    assert "rich@example.com" not in by_status.content.decode().split("<tbody>")[1]
    by_plan = admin_client.get(
        "/admin/credits/creditaccount/", {"user__subscription__plan_type": "ugly-duckling"}
    )
    assert [e for e in ("dora@", "rich@") if e in by_plan.content.decode().split("<tbody>")[1]] == ["dora@"]


def test_subscription_list_has_balances_and_typed_filter(admin_client, customer, report_users):
    page = admin_client.get("/admin/billing/subscription/", {"active_credits_above": "4999"})
    body = page.content.decode().split("<tbody>")[1]
    assert "rich@example.com" in body and "5,000" in body and "dora@example.com" in body
    assert "late@example.com" not in body  # past due


def test_change_pages_are_titled_with_the_email(admin_client, customer):
    for url in (
        f"/admin/credits/creditaccount/{customer.pk}/change/",
        f"/admin/billing/subscription/{customer.subscription.pk}/change/",
        f"/admin/gmail/gmailtoken/{customer.gmail_token.pk}/change/",
        f"/admin/accounts/user/{customer.pk}/change/",
    ):
        html = admin_client.get(url).content.decode()
        assert "<h1>dora@example.com</h1>" in html, url
    account = admin_client.get(f"/admin/credits/creditaccount/{customer.pk}/change/").content.decode()
    assert "12,335" in account and not re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", account)


@pytest.mark.parametrize(
    "url",
    [
        "/admin/",
        "/admin/console/customers/?q=dora",
        "/admin/console/customers/1/",
        "/admin/console/reports/active-with-credits/?min_credits=100",
        "/admin/console/reports/active-with-credits/?min_credits=100&format=csv",
    ],
)
def test_non_staff_and_anonymous_get_no_console(url, user, customer):
    anonymous = Client().get(url)
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
    member = Client()
    member.force_login(user)
    response = member.get(url)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
