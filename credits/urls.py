from django.urls import path

from credits import api

urlpatterns = [
    path("", api.BalanceView.as_view(), name="credits-balance"),
    path("transactions/", api.TransactionListView.as_view(), name="credits-transactions"),
    path("deduct/", api.DeductView.as_view(), name="credits-deduct"),
    path("grant/", api.GrantView.as_view(), name="credits-grant"),
]
