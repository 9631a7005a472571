from django import template

from console import selectors

register = template.Library()


@register.simple_tag
def dashboard_panels() -> list[selectors.Panel]:
    """The dashboard's figures, for the admin index (console/dashboard.html)."""
    return selectors.dashboard_panels()
