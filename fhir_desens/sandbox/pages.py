"""Server-rendered HTML of the sandbox EHR: plain HTML and one stylesheet, every value escaped.

No template engine and no JavaScript: each page is a small function that escapes what it inserts with
:func:`h`. The pages are the launcher (pick practitioner, patient, app), the EHR page that frames the app,
the patient picker of a standalone launch, and an error page.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape
from urllib.parse import urlencode

from fhir_desens.protocol.display import chart_date_text

#: What real EHRs typically allow a framed SMART app (Cerner/athena-style sandbox attribute).
IFRAME_SANDBOX = "allow-scripts allow-same-origin allow-forms allow-popups allow-popups-to-escape-sandbox allow-downloads allow-modals"


def _born(birth_date: str | None) -> str:
    """A birth date as the app writes dates ("14 Mar 1962"), so the EHR's banner and the app's agree."""
    return chart_date_text(birth_date) if birth_date else ""


def h(value: object) -> str:
    """Escape for HTML text and attribute values (quotes included)."""
    return escape("" if value is None else str(value), quote=True)


@dataclass(frozen=True)
class PatientChoice:
    id: str
    name: str
    key: str | None = None
    birth_date: str | None = None
    gender: str | None = None

    @property
    def handle(self) -> str:
        """What the launcher passes around: the fixture key when there is one, else the id."""
        return self.key or self.id


@dataclass(frozen=True)
class PractitionerChoice:
    id: str
    name: str


@dataclass(frozen=True)
class AppChoice:
    client_id: str
    name: str
    launch_url: str


def _layout(title: str, body: str) -> str:
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{h(title)} · fhir-desens sandbox EHR</title>"
        '<link rel="stylesheet" href="/static/sandbox.css"></head>'
        '<body><header class="topbar"><a class="brand" href="/">fhir-desens sandbox EHR</a>'
        '<span class="tag">development only, not a medical device</span></header>'
        f"<main>{body}</main></body></html>\n"
    )


def _options(items: Iterable[tuple[str, str]], selected: str | None) -> str:
    return "".join(
        f'<option value="{h(value)}"{" selected" if value == selected else ""}>{h(label)}</option>'
        for value, label in items
    )


def launcher_page(
    *,
    patients: Sequence[PatientChoice],
    practitioners: Sequence[PractitionerChoice],
    apps: Sequence[AppChoice],
    fhir_base_url: str,
    issuer: str,
) -> str:
    if apps:
        app_field = (
            '<label for="app">App</label><select id="app" name="app">'
            + _options(((a.client_id, f"{a.name} ({a.launch_url})") for a in apps), None)
            + "</select>"
        )
    else:
        app_field = (
            '<p class="warn">No app with a launch URL is registered. Register one with '
            "<code>fhir-desens sandbox --app-launch-url URL --app-client-id ID</code> or "
            "<code>Sandbox.register_client(...)</code>.</p>"
        )
    patient_rows = "".join(
        f"<tr><td>{h(p.name)}</td><td><code>{h(p.key or '')}</code></td><td><code>{h(p.id)}</code></td>"
        f"<td>{h(_born(p.birth_date))}</td><td>{h(p.gender or '')}</td></tr>"
        for p in patients
    )
    body = (
        "<h1>Launch an app</h1>"
        '<form class="card" method="get" action="/ehr">'
        '<label for="practitioner">Practitioner (the signed-in user)</label>'
        '<select id="practitioner" name="practitioner">'
        + _options(((p.id, p.name) for p in practitioners), None)
        + "</select>"
        '<label for="patient">Patient</label><select id="patient" name="patient">'
        + _options(((p.handle, p.name) for p in patients), None)
        + "</select>"
        + app_field
        + "<fieldset><legend>Open the app</legend>"
        '<label class="inline"><input type="radio" name="mode" value="frame" checked> inside the EHR</label>'
        '<label class="inline"><input type="radio" name="mode" value="window"> in a new window</label>'
        "</fieldset>"
        '<button type="submit">Open the chart</button></form>'
        '<section class="card"><h2>Endpoints</h2><dl>'
        f"<dt>FHIR base (iss / aud)</dt><dd><code>{h(fhir_base_url)}</code></dd>"
        f"<dt>SMART configuration</dt><dd><code>{h(fhir_base_url)}/.well-known/smart-configuration</code></dd>"
        f"<dt>Issuer</dt><dd><code>{h(issuer)}</code></dd>"
        "<dt>Scripted launch</dt><dd><code>GET /launch?patient=KEY_OR_ID&amp;app=CLIENT_ID</code></dd>"
        "</dl></section>"
        '<section class="card"><h2>Patients</h2><table><thead><tr><th>Name</th><th>Key</th><th>Id</th>'
        "<th>Born</th><th>Gender</th></tr></thead><tbody>" + patient_rows + "</tbody></table></section>"
    )
    return _layout("Launcher", body)


def ehr_page(
    *,
    patient: PatientChoice,
    practitioner: PractitionerChoice | None,
    app: AppChoice,
    launch_query: dict[str, str],
    mode: str,
) -> str:
    """The chart: the EHR's own patient banner, then the app in a sandboxed iframe (or a link)."""
    framed_url = "/launch?" + urlencode({**launch_query, "need_patient_banner": "false"})
    window_url = "/launch?" + urlencode({**launch_query, "need_patient_banner": "true"})
    user = practitioner.name if practitioner else "sandbox user"
    banner = (
        '<section class="banner" aria-label="Patient banner">'
        f'<strong class="patient-name">{h(patient.name)}</strong>'
        f"<span>Born {h(_born(patient.birth_date) or 'unknown')}</span>"
        f"<span>{h(patient.gender or '')}</span>"
        f"<span>Id <code>{h(patient.id)}</code></span>"
        f'<span class="user">Signed in: {h(user)}</span></section>'
    )
    if mode == "window":
        content = (
            '<section class="card"><p>The app opens outside the EHR.</p>'
            f'<p><a class="button" href="{h(window_url)}" target="_blank" rel="noopener">'
            f"Open {h(app.name)} in a new window</a></p></section>"
        )
    else:
        content = (
            f'<iframe class="app-frame" title="{h(app.name)}" src="{h(framed_url)}" '
            f'sandbox="{IFRAME_SANDBOX}" allow="clipboard-write" referrerpolicy="no-referrer"></iframe>'
            f'<p class="hint"><a href="{h(window_url)}" target="_blank" rel="noopener">Open in a new window'
            "</a> instead.</p>"
        )
    return _layout(f"Chart: {patient.name}", banner + content)


def picker_page(
    *,
    pending_id: str,
    app_name: str,
    scope: str,
    patients: Sequence[PatientChoice],
    practitioners: Sequence[PractitionerChoice],
) -> str:
    """Standalone launch with ``launch/patient``: the user picks the patient (and who they are)."""
    choices = "".join(
        '<label class="choice"><input type="radio" name="patient" required '
        f'value="{h(p.id)}"{" checked" if i == 0 else ""}> {h(p.name)} '
        f"<small>{h(_born(p.birth_date))} <code>{h(p.key or p.id)}</code></small></label>"
        for i, p in enumerate(patients)
    )
    body = (
        f"<h1>Select a patient for {h(app_name)}</h1>"
        '<form class="card" method="post" action="/auth/authorize/select">'
        f'<input type="hidden" name="pending" value="{h(pending_id)}">'
        '<label for="practitioner">You are</label><select id="practitioner" name="practitioner">'
        + _options(((p.id, p.name) for p in practitioners), None)
        + "</select><fieldset><legend>Patient</legend>"
        + (choices or "<p>No patients are loaded.</p>")
        + "</fieldset>"
        f'<p class="hint">The app asked for: <code>{h(scope)}</code>. The sandbox approves automatically.</p>'
        '<button type="submit" name="decision" value="allow">Continue</button> '
        '<button type="submit" name="decision" value="deny" formnovalidate class="secondary">Deny</button>'
        "</form>"
    )
    return _layout("Select a patient", body)


def error_page(title: str, error: str, description: str) -> str:
    body = (
        f'<section class="card error"><h1>{h(title)}</h1>'
        f"<p><code>{h(error)}</code></p><p>{h(description)}</p></section>"
    )
    return _layout(title, body)
