from django.urls import path

from notifications.api import EasterEggClaimView, MarkShownView, UserFlagsView

urlpatterns = [
    path("", UserFlagsView.as_view(), name="notifications"),
    path("<int:notification_id>/shown/", MarkShownView.as_view(), name="notification-shown"),
    path("easter-eggs/claim/", EasterEggClaimView.as_view(), name="easter-egg-claim"),
]
