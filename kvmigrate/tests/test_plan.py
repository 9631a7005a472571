"""decide() is pure: it plans a batch from its records and a State, without touching the database."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from fivedocks.domains import DOMAINS
from kvmigrate.codec import encode_value
from kvmigrate.plan import State, decide
from kvmigrate.records import Previous, classify, fingerprint, with_previous
from kvmigrate.report import Counts

from .kvrecords import PLAN_CREDITS, real_credits

NOW = datetime(2026, 12, 2, tzinfo=UTC)


def _records(items: dict, previous: dict[str, Previous] | None = None):
    pairs = [(key, encode_value(value)) for key, value in items.items()]
    records = classify(pairs, frozenset(DOMAINS), Counts())
    return [with_previous(r, (previous or {}).get(r.key)) for r in records]


@pytest.mark.django_db
def test_a_record_taking_over_a_row_forgets_the_old_claim_in_the_plan_not_the_database(
    django_assert_num_queries,
):
    # user 7's account was moved from the plan layout's key; the platform's own record now wins it
    records = _records({"user_credits:7": real_credits()})
    state = State(users={7: None}, owners={"credits": {7: "credits:7"}, "billing": {}, "gmail": {}})
    with django_assert_num_queries(0):
        plan = decide(records, state, now=NOW)
    assert plan.forget_keys == ("credits:7",)
    assert [a.user_id for a in plan.accounts] == [7]
    assert plan.accounts[0].migration_key.startswith("kv-migration:user_credits:7:")
    assert plan.counts.as_dict()["credits"]["created"] == 1


def test_the_platform_layout_keeps_its_row_against_a_plan_record():
    records = _records({"credits:7": PLAN_CREDITS})
    state = State(users={7: None}, owners={"credits": {7: "user_credits:7"}, "billing": {}, "gmail": {}})
    plan = decide(records, state, now=NOW)
    assert plan.forget_keys == () and plan.accounts == ()
    assert [(q.key, q.reason_code) for q in plan.quarantine] == [("credits:7", "superseded")]
    assert plan.counts.as_dict()["credits"]["quarantined"] == 1


def test_an_unchanged_record_is_counted_and_planned_for_nothing():
    raw = encode_value(PLAN_CREDITS)
    previous = {"credits:7": Previous(fingerprint(raw), ("credits",), ("credits",))}
    records = _records({"credits:7": PLAN_CREDITS}, previous)
    plan = decide(records, State(), now=NOW)
    assert plan.migrated == () and plan.accounts == () and plan.quarantine == ()
    assert plan.counts.as_dict()["credits"]["unchanged"] == 1


def test_a_user_fivedocks_does_not_have_is_refused_whole():
    plan = decide(_records({"credits:8": PLAN_CREDITS}), State(), now=NOW)
    assert [(q.key, q.reason_code) for q in plan.quarantine] == [("credits:8", "unknown_user")]
    assert plan.accounts == () and plan.migrated == ()
