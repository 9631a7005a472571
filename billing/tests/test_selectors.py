"""The report "users with credits above N and an active subscription": one query, right answer."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.tests.factories import UserFactory
from billing import selectors
from billing.models import Subscription
from credits.tests.factories import CreditAccountFactory

pytestmark = pytest.mark.django_db


def person(name: str, balance: int | None, status: str | None):
    user = UserFactory(email=f"{name}@example.com")
    if balance is not None:
        CreditAccountFactory(user=user, balance=balance)
    if status is not None:
        Subscription.objects.create(user=user, status=status, plan_type="ugly-duckling")
    return user


@pytest.fixture
def population():
    return {
        "rich_active": person("rich_active", 500, "active"),
        "rich_trialing": person("rich_trialing", 900, "trialing"),  # trialing counts as active
        "just_above": person("just_above", 101, "active"),
        "exactly_min": person("exactly_min", 100, "active"),  # "above" is strict
        "poor_active": person("poor_active", 50, "active"),
        "rich_past_due": person("rich_past_due", 5000, "past_due"),
        "rich_canceled": person("rich_canceled", 5000, "canceled"),
        "rich_free": person("rich_free", 5000, "none"),
        "rich_no_row": person("rich_no_row", 5000, None),
        "active_no_account": person("active_no_account", None, "active"),
    }


def test_report_is_one_query_and_exact(population):
    with CaptureQueriesContext(connection) as queries:
        rows = list(selectors.users_with_credits_above_and_active_subscription(min_credits=100))
        summary = [(u.email.split("@")[0], u.balance, u.subscription_status, u.plan_type) for u in rows]
    assert len(queries) == 1
    sql = queries[0]["sql"]
    assert '"users"' in sql and '"user_credits"' in sql and '"subscriptions"' in sql
    assert summary == [
        ("rich_trialing", 900, "trialing", "ugly-duckling"),
        ("rich_active", 500, "active", "ugly-duckling"),
        ("just_above", 101, "active", "ugly-duckling"),
    ]


def test_report_threshold_moves_the_line(population, django_assert_num_queries):
    with django_assert_num_queries(1):
        emails = [u.email for u in selectors.users_with_credits_above_and_active_subscription(min_credits=0)]
    assert emails == [
        "rich_trialing@example.com",
        "rich_active@example.com",
        "just_above@example.com",
        "exactly_min@example.com",
        "poor_active@example.com",
    ]
    assert not selectors.users_with_credits_above_and_active_subscription(min_credits=900).exists()


def test_admin_filter_uses_the_same_conditions(population):
    picked = selectors.filter_subscriptions_active_with_credits_above(
        Subscription.objects.all(), min_credits=100
    )
    assert sorted(s.user.email.split("@")[0] for s in picked) == [
        "just_above",
        "rich_active",
        "rich_trialing",
    ]
