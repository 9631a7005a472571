"""Balance reads come from the per-user cache entry that committed writes replace."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.tests.factories import UserFactory
from credits import selectors, services


@pytest.mark.django_db(transaction=True)
def test_second_read_is_served_from_the_cache_and_a_deduction_replaces_it():
    user = UserFactory()
    services.grant(user=user, amount=100, reason="welcome")
    selectors.get_balance(user_id=user.id)
    with CaptureQueriesContext(connection) as queries:
        assert selectors.get_balance(user_id=user.id).balance == 100
    assert len(queries) == 0
    services.deduct(user=user, operation="company_search")
    with CaptureQueriesContext(connection) as queries:
        assert selectors.get_balance(user_id=user.id).balance == 90
    assert len(queries) == 0  # the committed write stored the new balance


@pytest.mark.django_db(transaction=True)
def test_one_users_write_does_not_evict_another_users_balance():
    alice, bob = UserFactory(), UserFactory()
    services.grant(user=alice, amount=100, reason="welcome")
    services.grant(user=bob, amount=100, reason="welcome")
    selectors.get_balance(user_id=bob.id)
    services.deduct(user=alice, operation="company_search")
    with CaptureQueriesContext(connection) as queries:
        assert selectors.get_balance(user_id=bob.id).balance == 100
    assert len(queries) == 0


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_write_leaves_the_cache_alone():
    from django.db import transaction

    user = UserFactory()
    services.grant(user=user, amount=100, reason="welcome")
    with pytest.raises(RuntimeError), transaction.atomic():
        services.deduct(user=user, operation="company_search")
        raise RuntimeError
    assert selectors.get_balance(user_id=user.id).balance == 100


@pytest.mark.django_db(transaction=True)
def test_the_deduction_decides_on_the_database_not_the_cache():
    from credits import cache as balance_cache
    from credits.models import CreditAccount

    user = UserFactory()
    services.grant(user=user, amount=100, reason="welcome")
    assert selectors.get_balance(user_id=user.id).balance == 100
    # Another process spent the credits; this process's cache still says 100.
    CreditAccount.objects.filter(user=user).update(balance=0)
    assert balance_cache.read(user.id).balance == 100
    with pytest.raises(services.InsufficientCredits):
        services.deduct(user=user, operation="company_search")
