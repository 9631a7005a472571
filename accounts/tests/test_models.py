import pytest
from django.db import IntegrityError

from accounts.models import User

pytestmark = pytest.mark.django_db


def test_users_live_in_the_users_table():
    assert User._meta.db_table == "users"


def test_email_is_unique_and_normalised():
    User.objects.create_user("Someone@Example.com", "pw")
    with pytest.raises(IntegrityError):
        User.objects.create_user("someone@example.com", "pw")


def test_firebase_uid_is_unique_when_set():
    User.objects.create_user("a@example.com", firebase_uid="uid-1")
    User.objects.create_user("b@example.com")
    User.objects.create_user("c@example.com")  # several users without a uid are fine
    with pytest.raises(IntegrityError):
        User.objects.create_user("d@example.com", firebase_uid="uid-1")
