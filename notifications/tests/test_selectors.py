import pytest
from django.db import transaction

from accounts.tests.factories import UserFactory
from notifications import selectors, services


@pytest.mark.django_db
def test_user_flags_grouped_by_kind_with_names(user):
    services.mark_shown(user=user, notification_id=4)
    services.mark_shown(user=user, notification_id=1)
    services.award_badge(user=user, badge_id=0)
    services.claim_easter_egg(user=user, phrase="5ducks")
    flags = selectors.user_flags(user_id=user.pk)
    assert [(f.id, f.name) for f in flags.notifications] == [
        (1, "waitlist_joined"),
        (4, "start_selling_tooltip_shown"),
    ]
    assert [(f.id, f.name) for f in flags.badges] == [(0, "registration_complete")]
    assert [(f.id, f.name) for f in flags.easter_eggs] == [(0, "5ducks")]


@pytest.mark.django_db
def test_other_users_flags_are_not_included(user):
    services.mark_shown(user=UserFactory(), notification_id=1)
    flags = selectors.user_flags(user_id=user.pk)
    assert (flags.notifications, flags.badges, flags.easter_eggs) == ([], [], [])


@pytest.mark.django_db
def test_ids_the_catalogue_no_longer_knows_are_still_listed(user):
    from notifications.models import UserNotification

    UserNotification.objects.create(user=user, kind="notification", notification_id=7)
    assert selectors.user_flags(user_id=user.pk).notifications[0].name == "unknown_notification_7"


@pytest.mark.django_db(transaction=True)
def test_cachalot_serves_repeat_reads_and_a_write_invalidates(django_assert_num_queries):
    user = UserFactory()
    services.mark_shown(user=user, notification_id=1)
    with django_assert_num_queries(1):
        first = selectors.user_flags(user_id=user.pk)
    with django_assert_num_queries(0):
        again = selectors.user_flags(user_id=user.pk)
    assert again == first and [f.id for f in again.notifications] == [1]

    services.mark_shown(user=user, notification_id=2)  # raw INSERT ... ON CONFLICT
    with django_assert_num_queries(1):
        after_write = selectors.user_flags(user_id=user.pk)
    assert [f.id for f in after_write.notifications] == [1, 2]

    services.mark_shown(user=user, notification_id=2)  # a repeat inserts nothing
    with django_assert_num_queries(1):
        selectors.user_flags(user_id=user.pk)
    with django_assert_num_queries(0):
        selectors.user_flags(user_id=user.pk)


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_claim_leaves_the_cache_correct():
    user = UserFactory()
    assert selectors.user_flags(user_id=user.pk).easter_eggs == []

    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        services.claim_easter_egg(user=user, phrase="5ducks")
        assert [f.id for f in selectors.user_flags(user_id=user.pk).easter_eggs] == [0]
        raise Abort
    assert selectors.user_flags(user_id=user.pk).easter_eggs == []
    assert not selectors.has_flag(user_id=user.pk, kind="easter_egg", notification_id=0)
