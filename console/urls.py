"""Mounted at /admin/console/ (before the admin's own URLs); every view is staff-only."""

from django.contrib import admin
from django.urls import path

from console import views

app_name = "console"
urlpatterns = [
    path("customers/", admin.site.admin_view(views.customer_search), name="customer-search"),
    path("customers/<int:user_id>/", admin.site.admin_view(views.customer), name="customer"),
    path("reports/active-with-credits/", admin.site.admin_view(views.report), name="report"),
]
