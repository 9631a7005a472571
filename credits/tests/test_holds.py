"""Credit holds: reserve, capture, release, expiry decided in the query, the cache entry."""

import contextlib
import datetime as dt
import random
from unittest import mock

import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts.tests.factories import UserFactory
from credits import cache as balance_cache
from credits import reconcile, selectors, services
from credits.models import CreditHold, CreditTransaction
from tests.concurrency import run_concurrently


def _run_concurrently(fn, count: int) -> list:
    return run_concurrently(fn, count).values()


def _funded(amount: int):
    user = UserFactory()
    services.grant(user=user, amount=amount, reason="opening")
    return user


@contextlib.contextmanager
def _later(seconds: float):
    """Every clock fivedocks reads (django.utils.timezone.now) jumps ahead; nothing else runs."""
    real_now = timezone.now
    with mock.patch("django.utils.timezone.now", lambda: real_now() + dt.timedelta(seconds=seconds)):
        yield


@pytest.mark.django_db
def test_a_hold_lowers_available_not_the_balance():
    user = _funded(100)
    result = services.open_hold(user=user, amount=30, idempotency_key="k1")
    assert (result.balance, result.available, result.replayed) == (100, 70, False)
    assert result.hold.expires_at > timezone.now() + dt.timedelta(minutes=14)
    snapshot = selectors.get_balance(user_id=user.pk)
    assert (snapshot.balance, snapshot.held, snapshot.available) == (100, 30, 70)
    assert CreditTransaction.objects.filter(user=user).count() == 1  # only the opening grant


@pytest.mark.django_db
def test_a_hold_beyond_available_is_refused_with_402():
    user = _funded(100)
    services.open_hold(user=user, amount=80, idempotency_key="k1")
    with pytest.raises(services.InsufficientCredits) as info:
        services.open_hold(user=user, amount=30, idempotency_key="k2")
    assert info.value.status_code == 402
    assert info.value.details == {"required": 30, "available": 20}
    assert not CreditHold.objects.filter(idempotency_key="k2").exists()


@pytest.mark.django_db
def test_a_hold_by_operation_uses_its_cost(settings):
    user = _funded(100)
    result = services.open_hold(user=user, operation="company_search", idempotency_key="k")
    assert result.hold.amount == settings.CREDIT_OPERATION_COSTS["company_search"]
    with pytest.raises(services.UnknownOperation):
        services.open_hold(user=user, operation="nope", idempotency_key="k2")
    with pytest.raises(services.DomainError):
        services.open_hold(user=user, operation="company_search", amount=5, idempotency_key="k3")


@pytest.mark.django_db
def test_a_replayed_key_returns_the_first_hold():
    user = _funded(100)
    first = services.open_hold(user=user, amount=60, idempotency_key="k")
    again = services.open_hold(user=user, amount=60, idempotency_key="k")
    assert again.replayed and again.hold.pk == first.hold.pk
    assert CreditHold.objects.filter(user=user).count() == 1
    assert selectors.get_balance(user_id=user.pk).available == 40
    with pytest.raises(services.IdempotencyKeyReused):
        services.open_hold(user=user, amount=10, idempotency_key="k")


@pytest.mark.django_db
def test_capture_writes_one_deduction_carrying_the_hold_id():
    user = _funded(100)
    hold = services.open_hold(user=user, amount=30, idempotency_key="k", owner="svc:1").hold
    result = services.capture_hold(hold_id=hold.pk, owner="svc:1")
    assert result.balance == 70 and not result.replayed
    row = result.transaction
    assert (row.amount, row.type, row.metadata["hold_id"]) == (-30, "deduction", hold.pk)
    assert CreditHold.objects.get(pk=hold.pk).status == "captured"
    again = services.capture_hold(hold_id=hold.pk, owner="svc:1")
    assert again.replayed and again.transaction.pk == row.pk
    assert CreditTransaction.objects.filter(user=user, type="deduction").count() == 1
    snapshot = selectors.get_balance(user_id=user.pk)
    assert (snapshot.balance, snapshot.available) == (70, 70)


@pytest.mark.django_db
def test_capturing_less_than_held_returns_the_rest():
    user = _funded(100)
    hold = services.open_hold(user=user, amount=60, idempotency_key="k").hold
    result = services.capture_hold(hold_id=hold.pk, amount=25)
    assert result.transaction.amount == -25
    snapshot = selectors.get_balance(user_id=user.pk)
    assert (snapshot.balance, snapshot.held, snapshot.available) == (75, 0, 75)
    with pytest.raises(services.HoldCaptured):  # a repeat asking another amount is a conflict
        services.capture_hold(hold_id=hold.pk, amount=30)


@pytest.mark.django_db
def test_capture_more_than_held_is_refused():
    user = _funded(100)
    hold = services.open_hold(user=user, amount=20, idempotency_key="k").hold
    with pytest.raises(services.CaptureExceedsHold):
        services.capture_hold(hold_id=hold.pk, amount=21)
    assert CreditHold.objects.get(pk=hold.pk).status == "open"


@pytest.mark.django_db
def test_release_is_idempotent_and_capture_after_release_is_409():
    user = _funded(100)
    hold = services.open_hold(user=user, amount=40, idempotency_key="k").hold
    released = services.release_hold(hold_id=hold.pk)
    assert (released.balance, released.available, released.replayed) == (100, 100, False)
    assert services.release_hold(hold_id=hold.pk).replayed
    with pytest.raises(services.HoldReleased) as info:
        services.capture_hold(hold_id=hold.pk)
    assert info.value.status_code == 409
    assert selectors.get_balance(user_id=user.pk).available == 100


@pytest.mark.django_db
def test_release_after_capture_is_409():
    user = _funded(100)
    hold = services.open_hold(user=user, amount=40, idempotency_key="k").hold
    services.capture_hold(hold_id=hold.pk)
    with pytest.raises(services.HoldCaptured) as info:
        services.release_hold(hold_id=hold.pk)
    assert info.value.status_code == 409


@pytest.mark.django_db
def test_another_owner_cannot_settle_a_hold():
    user = _funded(100)
    hold = services.open_hold(user=user, amount=40, idempotency_key="k", owner="svc:1").hold
    with pytest.raises(services.HoldNotFound):
        services.capture_hold(hold_id=hold.pk, owner="svc:2")
    with pytest.raises(services.HoldNotFound):
        services.release_hold(hold_id=hold.pk, owner="svc:2")


@pytest.mark.django_db
def test_an_expired_hold_stops_counting_with_no_job_and_cannot_be_settled():
    user = _funded(100)
    hold = services.open_hold(user=user, amount=70, idempotency_key="k", ttl_seconds=60).hold
    assert selectors.get_balance(user_id=user.pk).available == 30  # cached, with held_until
    with _later(61):  # nothing else runs: no job, no write to the account
        assert selectors.get_balance(user_id=user.pk).available == 100
        services.deduct(user=user, operation="company_and_contacts", idempotency_key="d")  # 70
        for settle in (services.capture_hold, services.release_hold):
            with pytest.raises(services.HoldExpired) as info:
                settle(hold_id=hold.pk)
            assert (info.value.status_code, info.value.code) == (409, "hold_expired")
    assert CreditHold.objects.get(pk=hold.pk).status == "open"  # untouched, just no longer counted


@pytest.mark.django_db
def test_the_cached_entry_is_a_miss_once_its_earliest_hold_expires():
    user = _funded(100)
    long = services.open_hold(user=user, amount=10, idempotency_key="a", ttl_seconds=600).hold
    short = services.open_hold(user=user, amount=20, idempotency_key="b", ttl_seconds=60).hold
    entry = selectors.get_balance(user_id=user.pk)
    assert (entry.held, entry.held_until) == (30, short.expires_at)
    assert balance_cache.read(user.pk) == entry
    with _later(59):
        assert balance_cache.read(user.pk) == entry
    # The entry is still in the cache (its TTL is longer) but no longer served.
    with _later(61):
        assert balance_cache.read(user.pk) is None
        again = selectors.get_balance(user_id=user.pk)
        assert (again.held, again.available, again.held_until) == (10, 90, long.expires_at)


@pytest.mark.django_db
def test_the_users_own_deduct_respects_open_holds():
    user = _funded(100)
    services.open_hold(user=user, amount=85, idempotency_key="k")
    with pytest.raises(services.InsufficientCredits) as info:
        services.deduct(user=user, operation="individual_email", idempotency_key="d1")  # 20
    assert info.value.details["available"] == 15
    services.deduct(user=user, operation="company_search", idempotency_key="d2")  # 10 fits
    snapshot = selectors.get_balance(user_id=user.pk)
    assert (snapshot.balance, snapshot.held, snapshot.available) == (90, 85, 5)
    assert list(reconcile.find_mismatches()) == []


@pytest.mark.django_db
def test_ttl_bounds(settings):
    user = _funded(100)
    with pytest.raises(services.DomainError):
        services.open_hold(user=user, amount=1, idempotency_key="k", ttl_seconds=0)
    with pytest.raises(services.DomainError):
        services.open_hold(
            user=user, amount=1, idempotency_key="k", ttl_seconds=settings.CREDIT_HOLD_MAX_TTL_SECONDS + 1
        )


@pytest.mark.django_db
def test_purge_removes_old_settled_and_expired_holds_only(capsys):
    user = _funded(100)
    kept = services.open_hold(user=user, amount=10, idempotency_key="open").hold
    expired = services.open_hold(user=user, amount=10, idempotency_key="expired").hold
    captured = services.open_hold(user=user, amount=10, idempotency_key="captured").hold
    services.capture_hold(hold_id=captured.pk)
    long_ago = timezone.now() - dt.timedelta(days=40)
    CreditHold.objects.filter(pk=expired.pk).update(expires_at=long_ago, created_at=long_ago)
    CreditHold.objects.filter(pk=captured.pk).update(settled_at=long_ago)
    call_command("credit_holds", "list", "--state", "expired")
    assert f"{expired.pk}" in capsys.readouterr().out
    call_command("credit_holds", "purge", "--older-than-days", "30")
    assert "2 holds purged" in capsys.readouterr().out
    assert list(CreditHold.objects.values_list("pk", flat=True)) == [kept.pk]
    assert CreditTransaction.objects.filter(metadata__hold_id=captured.pk).exists()  # the ledger stays


# --- concurrency: real transactions --------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_32_concurrent_holds_against_a_balance_for_10_exactly_10_succeed():
    user = _funded(100)

    def hold(i: int) -> str:
        try:
            services.open_hold(user=user, amount=10, idempotency_key=f"h{i}")
            return "ok"
        except services.InsufficientCredits:
            return "refused"

    results = _run_concurrently(hold, 32)
    assert results.count("ok") == 10
    assert results.count("refused") == 22
    assert selectors.balance_from_database(user_id=user.pk).available == 0


@pytest.mark.django_db(transaction=True)
def test_holds_and_deductions_racing_never_overspend():
    user = _funded(200)

    def act(i: int) -> int:
        try:
            if i % 2:
                services.open_hold(user=user, amount=20, idempotency_key=f"h{i}")
            else:
                services.deduct(user=user, operation="individual_email", idempotency_key=f"d{i}")
            return 20
        except services.InsufficientCredits:
            return 0

    spent = sum(_run_concurrently(act, 24))
    assert spent == 200
    snapshot = selectors.balance_from_database(user_id=user.pk)
    assert snapshot.available == 0 and snapshot.balance == snapshot.held
    assert list(reconcile.find_mismatches()) == []


@pytest.mark.django_db(transaction=True)
def test_a_capture_repeated_concurrently_writes_one_ledger_row():
    user = _funded(100)
    hold = services.open_hold(user=user, amount=30, idempotency_key="k").hold
    results = _run_concurrently(lambda i: services.capture_hold(hold_id=hold.pk), 8)
    assert len({r.transaction.pk for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    assert CreditTransaction.objects.filter(user=user, type="deduction").count() == 1
    assert selectors.balance_from_database(user_id=user.pk).balance == 70


@pytest.mark.django_db(transaction=True)
def test_captures_and_releases_in_any_interleaving_keep_the_ledger_exact():
    user = _funded(1000)
    holds = [services.open_hold(user=user, amount=25, idempotency_key=f"h{i}").hold for i in range(24)]
    rng = random.Random(13)
    actions = [(h.pk, rng.choice(["capture", "release", "partial"])) for h in holds for _ in range(2)]
    rng.shuffle(actions)

    def settle(i: int) -> str:
        hold_id, action = actions[i]
        try:
            if action == "release":
                services.release_hold(hold_id=hold_id)
            else:
                services.capture_hold(hold_id=hold_id, amount=10 if action == "partial" else None)
            return "ok"
        except (services.HoldReleased, services.HoldCaptured):
            return "409"

    outcomes = _run_concurrently(settle, len(actions))
    assert set(outcomes) <= {"ok", "409"}
    assert list(reconcile.find_mismatches()) == []
    captured = sum(
        CreditHold.objects.filter(user=user, status="captured").values_list("captured_amount", flat=True)
    )
    snapshot = selectors.balance_from_database(user_id=user.pk)
    assert snapshot.balance == 1000 - captured
    assert snapshot.held == 0
    assert CreditHold.objects.filter(user=user, status="open").count() == 0


@pytest.mark.django_db
def test_the_credits_api_shows_available_beside_balance(user, user_client):
    services.grant(user=user, amount=100, reason="opening")
    services.open_hold(user=user, amount=35, idempotency_key="k")
    body = user_client.get("/api/credits/").json()
    assert (body["balance"], body["held"], body["available"]) == (100, 35, 65)
    response = user_client.post(
        "/api/credits/deduct/", {"operation": "company_and_contacts", "idempotency_key": "d"}
    )
    assert response.status_code == 402  # 70 > 65 available
    assert response.json()["code"] == "insufficient_credits"


@pytest.mark.django_db
def test_the_admin_lists_holds_with_their_state_and_purges_settled_ones(client, staff_user):
    user = _funded(100)
    open_hold = services.open_hold(user=user, amount=10, idempotency_key="open").hold
    released = services.open_hold(user=user, amount=10, idempotency_key="gone").hold
    services.release_hold(hold_id=released.pk)
    client.force_login(staff_user)
    page = client.get("/admin/credits/credithold/?state=open")
    assert page.status_code == 200
    assert page.context["cl"].result_count == 1
    response = client.post(
        "/admin/credits/credithold/",
        {"action": "purge_old", "_selected_action": [open_hold.pk, released.pk]},
    )
    assert response.status_code == 302
    assert list(CreditHold.objects.values_list("pk", flat=True)) == [open_hold.pk]
