from django.urls import path

from gmail.api import CallbackView, ConnectionView, ConnectView, StatusView

urlpatterns = [
    path("", ConnectionView.as_view(), name="gmail-connection"),
    path("connect/", ConnectView.as_view(), name="gmail-connect"),
    path("callback/", CallbackView.as_view(), name="gmail-callback"),
    path("status/", StatusView.as_view(), name="gmail-status"),
]
