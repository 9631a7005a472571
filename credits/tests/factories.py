import factory

from accounts.tests.factories import UserFactory
from credits.models import CreditAccount


class CreditAccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CreditAccount

    user = factory.SubFactory(UserFactory)
    balance = 0
