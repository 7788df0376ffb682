"""The navigation: every page in a fixed order, shown once the page serves its path."""

from __future__ import annotations

import flask

# The navigation, in this order; an entry shows once a page serves its path.
NAV: tuple[tuple[str, str], ...] = (
    ("/now", "Now"),
    ("/routes", "Inbound routes"),
    ("/agents", "Agents"),
    ("/oncall", "On call"),
    ("/incidents", "Incidents"),
    ("/calls", "Calls"),
    ("/voicemails", "Voicemails"),
    ("/audit", "Audit"),
)


def nav_items() -> list[tuple[str, str]]:
    """The navigation entries whose page is registered: (path, label)."""
    paths = {rule.rule for rule in flask.current_app.url_map.iter_rules()}
    return [(path, label) for path, label in NAV if path in paths]
