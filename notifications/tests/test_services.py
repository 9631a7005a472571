import threading

import pytest

from accounts.tests.factories import UserFactory
from credits import selectors as credit_selectors
from credits import services as credit_services
from credits.models import CreditAccount, CreditTransaction
from fivedocks.errors import DomainError
from notifications import services
from notifications.models import UserNotification
from tests.concurrency import run_concurrently


@pytest.mark.django_db
class TestMarkShown:
    def test_first_call_creates_then_returns_the_same_row(self, user):
        row, created = services.mark_shown(user=user, notification_id=2)
        again, created_again = services.mark_shown(user=user, notification_id=2)
        assert created and not created_again
        assert again.pk == row.pk and again.shown_at == row.shown_at
        assert UserNotification.objects.filter(user=user).count() == 1
        assert (row.kind, row.notification_id, row.name) == ("notification", 2, "search_tooltip_shown")

    def test_returned_row_is_the_stored_row(self, user):
        row, _ = services.mark_shown(user=user, notification_id=1, metadata={"source": "test"})
        stored = UserNotification.objects.get(pk=row.pk)
        assert (stored.user_id, stored.kind, stored.notification_id) == (user.pk, "notification", 1)
        assert stored.shown_at == row.shown_at and stored.metadata == {"source": "test"}
        assert not row._state.adding

    def test_unknown_id_is_404(self, user):
        with pytest.raises(services.UnknownNotification) as excinfo:
            services.mark_shown(user=user, notification_id=99)
        assert excinfo.value.status_code == 404
        assert not UserNotification.objects.exists()

    def test_easter_eggs_cannot_be_marked_without_claiming(self, user):
        with pytest.raises(DomainError):
            services.mark_shown(user=user, notification_id=0, kind="easter_egg")
        with pytest.raises(DomainError):
            services.mark_shown(user=user, notification_id=0, kind="trophy")
        assert not UserNotification.objects.exists()

    def test_flags_are_per_user_and_per_kind(self, user):
        other = UserFactory()
        services.mark_shown(user=user, notification_id=1)
        _, created = services.mark_shown(user=other, notification_id=1)
        assert created
        badge, created = services.award_badge(user=user, badge_id=0)
        assert created and badge.kind == "badge"
        assert UserNotification.objects.count() == 3


@pytest.mark.django_db
def test_award_badge_once(user):
    first, created = services.award_badge(user=user, badge_id=0)
    second, created_again = services.award_badge(user=user, badge_id=0)
    assert created and not created_again and first.pk == second.pk
    assert first.name == "registration_complete"
    with pytest.raises(services.UnknownNotification):
        services.award_badge(user=user, badge_id=5)


@pytest.mark.django_db
class TestClaimEasterEgg:
    def test_claim_grants_the_reward_with_flag_and_ledger_row(self, user):
        row, result = services.claim_easter_egg(user=user, phrase="5ducks")
        assert (row.kind, row.notification_id, row.name) == ("easter_egg", 0, "5ducks")
        assert not result.replayed and result.balance == 1000
        entry = CreditTransaction.objects.get(user=user)
        assert (entry.amount, entry.type, entry.idempotency_key) == (1000, "bonus", "easter-egg:0")
        assert CreditAccount.objects.get(user=user).balance == 1000

    def test_phrase_matching_ignores_case_and_surrounding_whitespace(self, user):
        row, result = services.claim_easter_egg(user=user, phrase="  Free PALESTINE \n")
        assert row.notification_id == 1 and result.transaction.amount == 3000
        row, result = services.claim_easter_egg(user=user, phrase="HE IS RISEN")
        assert row.notification_id == 2 and result.balance == 6000

    def test_unknown_phrase_is_404_and_changes_nothing(self, user):
        for phrase in ("6ducks", "", "   ", "free  palestine"):
            with pytest.raises(services.UnknownEasterEgg) as excinfo:
                services.claim_easter_egg(user=user, phrase=phrase)
            assert excinfo.value.status_code == 404
        assert not UserNotification.objects.exists() and not CreditTransaction.objects.exists()

    def test_second_claim_is_409_and_grants_nothing(self, user):
        services.claim_easter_egg(user=user, phrase="5ducks")
        with pytest.raises(services.AlreadyClaimed) as excinfo:
            services.claim_easter_egg(user=user, phrase="5DUCKS")
        assert excinfo.value.status_code == 409 and excinfo.value.code == "already_claimed"
        assert CreditTransaction.objects.filter(user=user).count() == 1
        assert CreditAccount.objects.get(user=user).balance == 1000

    def test_each_user_claims_once(self, user):
        other = UserFactory()
        services.claim_easter_egg(user=user, phrase="5ducks")
        _, result = services.claim_easter_egg(user=other, phrase="5ducks")
        assert result.balance == 1000
        assert CreditTransaction.objects.filter(idempotency_key="easter-egg:0").count() == 2

    def test_the_reward_adds_to_an_existing_balance(self, user):
        credit_services.grant(user=user, amount=250, reason="welcome")
        _, result = services.claim_easter_egg(user=user, phrase="5ducks")
        assert result.balance == 1250

    def test_a_failed_grant_rolls_back_the_flag(self, user):
        # The egg's idempotency key already used for another grant: the credit service refuses,
        # and the flag written before it in the same transaction disappears with it.
        credit_services.grant(user=user, amount=5, reason="odd", idempotency_key="easter-egg:0")
        with pytest.raises(credit_services.IdempotencyKeyReused):
            services.claim_easter_egg(user=user, phrase="5ducks")
        assert not UserNotification.objects.filter(user=user).exists()
        assert CreditAccount.objects.get(user=user).balance == 5

    def test_deleted_flag_restores_it_without_a_second_grant(self, user):
        row, _ = services.claim_easter_egg(user=user, phrase="5ducks")
        UserNotification.objects.filter(pk=row.pk).delete()
        with pytest.raises(services.AlreadyClaimed):
            services.claim_easter_egg(user=user, phrase="5ducks")
        assert UserNotification.objects.filter(user=user, kind="easter_egg", notification_id=0).exists()
        assert CreditTransaction.objects.filter(user=user).count() == 1
        assert CreditAccount.objects.get(user=user).balance == 1000

    def test_claim_inside_an_outer_transaction_rolls_back_with_it(self, user):
        from django.db import transaction

        class Abort(Exception):
            pass

        with pytest.raises(Abort), transaction.atomic():
            services.claim_easter_egg(user=user, phrase="5ducks")
            raise Abort
        assert not UserNotification.objects.exists() and not CreditTransaction.objects.exists()


def _run_concurrently(count: int, func):
    """Run `func()` from `count` threads released together; returns results or exceptions."""
    return run_concurrently(lambda _: func(), count).all


@pytest.mark.django_db(transaction=True)
def test_concurrent_marks_leave_one_row_and_one_created():
    user = UserFactory()
    results = _run_concurrently(10, lambda: services.mark_shown(user=user, notification_id=3))
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sum(created for _, created in results) == 1
    assert len({row.pk for row, _ in results}) == 1
    assert UserNotification.objects.filter(user=user).count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_of_one_egg_grant_once():
    user = UserFactory()
    results = _run_concurrently(10, lambda: services.claim_easter_egg(user=user, phrase="he is risen"))
    successes = [r for r in results if isinstance(r, tuple)]
    refusals = [r for r in results if isinstance(r, services.AlreadyClaimed)]
    assert len(successes) == 1 and len(refusals) == 9, results
    assert CreditTransaction.objects.filter(user=user).count() == 1
    assert CreditAccount.objects.get(user=user).balance == 3000
    assert UserNotification.objects.filter(user=user, kind="easter_egg").count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_of_different_eggs_all_grant():
    user = UserFactory()
    phrases = ["5ducks", "free palestine", "he is risen"] * 3
    lock = threading.Lock()
    turn = iter(phrases)

    def claim():
        with lock:
            phrase = next(turn)
        return services.claim_easter_egg(user=user, phrase=phrase)

    results = _run_concurrently(len(phrases), claim)
    assert sum(isinstance(r, tuple) for r in results) == 3
    assert sum(isinstance(r, services.AlreadyClaimed) for r in results) == 6, results
    account = CreditAccount.objects.get(user=user)
    assert account.balance == 7000
    assert sorted(CreditTransaction.objects.filter(user=user).values_list("amount", flat=True)) == [
        1000,
        3000,
        3000,
    ]
    assert credit_selectors.balance_from_database(user_id=user.pk).balance == 7000
