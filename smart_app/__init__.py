"""The SMART on FHIR Flask app.

``create_app(config=None)`` reads defaults, then ``FHIR_DESENS_*`` environment variables, then the
``config`` mapping (tests), validates them (refusing to start without the required ones outside
testing) and wires the blueprints. See docs/configuration.md.

Besides the documented variables, the test mapping accepts ``TESTING``, ``HTTP_SESSION`` (a
``requests.Session`` used for every outbound request), ``CLOCK`` (a ``() -> float`` epoch clock) and
``SMART_CLIENT_OPTIONS`` (keyword arguments for :class:`fhir_desens.client.smart.SmartClient`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask

from fhir_desens.errors import InputError
from fhir_desens.protocol.display import chart_time_text, quantity_text
from fhir_desens.protocol.quantity import parse_quantity
from smart_app import log_hygiene
from smart_app.bedside import views as bedside_views
from smart_app.bedside.service import init_bedside
from smart_app.chart import views as chart_views
from smart_app.config import VARIABLES, build_settings, gather
from smart_app.errors import init_errors
from smart_app.launch import views as launch_views
from smart_app.launch import well_known
from smart_app.library import init_library
from smart_app.orders import views as orders_views
from smart_app.outcome import views as outcome_views
from smart_app.paper.sheets import order_reference
from smart_app.planning import views as planning_views
from smart_app.security import init_security
from smart_app.services import EXTENSION, build_services
from smart_app.timing import init_timing

__all__ = ["create_app"]


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    values = gather(config)
    settings = build_settings(values)
    extra = {k: v for k, v in values.items() if k not in VARIABLES}

    app = Flask(__name__, instance_relative_config=False)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        TESTING=settings.testing,
        # Cookies are not needed (sessions live server-side, reached through the URL path); should any
        # be set, they must work inside an EHR iframe and stay invisible to scripts.
        SESSION_COOKIE_SAMESITE="None",
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_PARTITIONED=True,
        MAX_CONTENT_LENGTH=64 * 1024,
        TEMPLATES_AUTO_RELOAD=False,
    )
    log_hygiene.install()  # no session id, token or patient identifier in any log line
    level = values.get("LOG_LEVEL") or "INFO"
    app.logger.setLevel(getattr(logging, str(level).upper(), logging.INFO))
    # Jinja autoescaping is on for .html templates (Flask's default); make sure it is never off.
    app.jinja_env.autoescape = True
    # Dates and times from the chart are written for people, in the site's zone (docs/display.md).
    app.jinja_env.filters["chart_time"] = lambda value: chart_time_text(str(value), settings.zone)
    # A dose or concentration (a Quantity) by the display policy: "1,296,700 units", "804.3 mg".
    app.jinja_env.filters["quantity"] = quantity_text
    # A dose kept as typed text in the draft ("2400000 units") by the same policy ("2,400,000 units").
    app.jinja_env.filters["dose_words"] = dose_words
    # An order as the printed sheets name it: "22C3-A57C" for this app's 32-hex-digit identifiers.
    app.jinja_env.filters["order_reference"] = order_reference

    init_library(app, settings.protocol_library)  # read once: a bad library stops the app here
    app.extensions[EXTENSION] = build_services(app, settings, extra)
    init_timing(app)
    init_security(app)
    init_errors(app)
    app.register_blueprint(launch_views.bp)
    app.register_blueprint(chart_views.bp)
    app.register_blueprint(well_known.bp)
    app.register_blueprint(planning_views.bp)
    app.register_blueprint(orders_views.bp)
    app.register_blueprint(outcome_views.bp)
    init_bedside(app, values)
    app.register_blueprint(bedside_views.bp)
    return app


def dose_words(text: object) -> str:
    """A dose the draft keeps as text ("2400000 units"), shown by the display policy ("2,400,000 units");
    text that is not a plain quantity (already grouped, empty) is shown as it is."""
    try:
        return quantity_text(parse_quantity(str(text), "dose"))
    except InputError:
        return str(text)
