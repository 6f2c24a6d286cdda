"""`{% load docket_permissions %}` … `{% if role|allows:"adjudicate" %}`: links only to pages the role opens.

The decision is annotation.permissions' own; a template never compares role names itself.
"""

from django import template

from annotation.permissions import role_allows

register = template.Library()


@register.filter
def allows(role: str | None, action: str) -> bool:
    return role_allows(role, action)
