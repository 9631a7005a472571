"""Writes of the platform integration: linking a Firebase identity to its user."""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction

from accounts.models import User
from fiveducks import first_sight
from fiveducks.firebase import FirebaseIdentity

logger = logging.getLogger(__name__)


def user_for_firebase_identity(*, identity: FirebaseIdentity) -> User | None:
    """The user of a verified Firebase token: by uid, else by verified email (uid then recorded).

    An unverified email never links to a user or imports one: anyone can create a Firebase
    account with someone else's address. None when no user can be found or imported.
    """
    user = User.objects.filter(firebase_uid=identity.uid).first()
    if user is not None:
        return user
    if not (identity.email and identity.email_verified):
        return None
    user = first_sight.find_or_import_user_by_email(email=identity.email)
    if user is None:
        return None
    if user.firebase_uid != identity.uid:
        try:
            with transaction.atomic():
                User.objects.filter(pk=user.pk).update(firebase_uid=identity.uid)
        except IntegrityError:  # a concurrent first request recorded it already
            pass
        else:
            if user.firebase_uid:
                logger.info("user %s: Firebase uid replaced (the verified email matched)", user.pk)
            user.firebase_uid = identity.uid
    return user
