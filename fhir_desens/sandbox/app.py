"""The sandbox EHR as one WSGI application (Werkzeug; Flask lives only in ``smart_app``).

Routes (relative to the issuer, e.g. ``http://127.0.0.1:PORT``):

=====================================  ==============================================================
``GET  /``                             launcher: pick practitioner, patient and app
``GET  /ehr?patient=&app=&practitioner=&mode=frame|window``   the chart with the app framed
``GET  /launch?patient=&app=&practitioner=&encounter=&need_patient_banner=``   302 to the app's launch
                                       URL with ``iss`` and a fresh single-use ``launch``
``GET  /.well-known/smart-configuration``  SMART discovery (also under ``/fhir/``); CORS
``GET  /.well-known/openid-configuration`` OIDC discovery (for id_token validation); CORS
``GET  /auth/jwks``                    the sandbox's public signing keys; CORS
``GET|POST /auth/authorize``           authorization endpoint
``POST /auth/authorize/select``        the standalone-launch patient picker's answer
``POST /auth/token``                   token endpoint; CORS
``*    /fhir/...``                     the FHIR gateway (``/fhir/metadata`` public); CORS
``GET  /smart-style.json``             the ``smart_style_url`` document; CORS
=====================================  ==============================================================
"""

from __future__ import annotations

import json
import logging
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from fhir_desens.sandbox.client_assertion import CLIENT_ASSERTION_SIGNING_ALGS
from fhir_desens.sandbox.clients import ClientRegistry, SandboxClient
from fhir_desens.sandbox.directory import Directory
from fhir_desens.sandbox.gateway import FhirGateway
from fhir_desens.sandbox.keys import ID_TOKEN_ALG, SigningKeys
from fhir_desens.sandbox.oauth import (
    AuthorizeError,
    NeedsSelection,
    Selection,
    SmartAuthorizationServer,
)
from fhir_desens.sandbox.pages import (
    AppChoice,
    PatientChoice,
    PractitionerChoice,
    ehr_page,
    error_page,
    launcher_page,
    picker_page,
)
from fhir_desens.sandbox.stores import LaunchContext
from fhir_desens.sandbox.vendors import PROFILES

log = logging.getLogger(__name__)

CAPABILITIES = [
    "launch-ehr",
    "launch-standalone",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "context-ehr-patient",
    "context-ehr-encounter",
    "context-standalone-patient",
    "context-banner",
    "context-style",
    "permission-v1",
    "permission-v2",
    "permission-patient",
    "permission-user",
    "permission-offline",
    "permission-online",
    "sso-openid-connect",
]
SCOPES_SUPPORTED = [
    "openid",
    "fhirUser",
    "profile",
    "launch",
    "launch/patient",
    "launch/encounter",
    "online_access",
    "offline_access",
    "patient/*.cruds",
    "patient/*.rs",
    "patient/*.read",
    "patient/*.write",
    "patient/*.*",
    "user/*.cruds",
    "user/*.rs",
    "user/*.read",
    "user/*.write",
    "user/*.*",
]
SMART_STYLE = {
    "color_background": "#f4f6f9",
    "color_error": "#c0392b",
    "color_highlight": "#1f5fa8",
    "color_modal_backdrop": "",
    "color_success": "#2e7d32",
    "color_text": "#1d2430",
    "dim_border_radius": "6px",
    "dim_font_size": "14px",
    "dim_spacing_size": "16px",
    "font_family_body": "system-ui, sans-serif",
    "font_family_heading": "system-ui, sans-serif",
}
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, Accept, If-Match, If-None-Match, "
    "If-None-Exist, If-Modified-Since, Prefer",
    "Access-Control-Expose-Headers": "Location, ETag, Last-Modified, Content-Location, WWW-Authenticate",
    "Access-Control-Max-Age": "600",
}
HTML_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def add_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def csp(*, frame_src: list[str] | None = None, form_action: list[str] | None = None) -> str:
    directives = [
        "default-src 'none'",
        "style-src 'self'",
        "img-src 'self' data:",
        "base-uri 'none'",
        "frame-ancestors 'self'",
        "form-action " + " ".join(["'self'", *(form_action or [])]),
    ]
    if frame_src is not None:
        directives.append("frame-src " + " ".join(["'self'", *frame_src]))
    return "; ".join(directives)


def html_response(body: str, status: int = 200, *, policy: str | None = None) -> Response:
    headers = dict(HTML_HEADERS)
    headers["Content-Security-Policy"] = policy or csp()
    return Response(body, status=status, headers=headers, content_type="text/html; charset=utf-8")


def json_response(data: Any, *, cors: bool = True, status: int = 200) -> Response:
    headers = dict(CORS_HEADERS) if cors else {}
    return Response(json.dumps(data), status=status, headers=headers, content_type="application/json")


class SandboxApp:
    """WSGI callable; ``issuer`` is the public origin (``http://127.0.0.1:PORT``), FHIR base ``{issuer}/fhir``."""

    def __init__(
        self,
        *,
        issuer: str,
        auth: SmartAuthorizationServer,
        gateway: FhirGateway,
        directory: Directory,
        clients: ClientRegistry,
        keys: SigningKeys,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.fhir_base_url = f"{self.issuer}/fhir"
        self.auth = auth
        self.gateway = gateway
        self.directory = directory
        self.clients = clients
        self.keys = keys
        self.url_map = Map(
            [
                Rule("/", endpoint="launcher", methods=["GET"]),
                Rule("/ehr", endpoint="ehr", methods=["GET"]),
                Rule("/launch", endpoint="launch", methods=["GET"]),
                Rule("/static/sandbox.css", endpoint="css", methods=["GET"]),
                Rule("/smart-style.json", endpoint="style", methods=["GET", "OPTIONS"]),
                Rule("/.well-known/smart-configuration", endpoint="discovery", methods=["GET", "OPTIONS"]),
                Rule("/.well-known/openid-configuration", endpoint="openid", methods=["GET", "OPTIONS"]),
                Rule("/auth/jwks", endpoint="jwks", methods=["GET", "OPTIONS"]),
                Rule("/auth/authorize", endpoint="authorize", methods=["GET", "POST"]),
                Rule("/auth/authorize/select", endpoint="select", methods=["POST"]),
                Rule("/auth/token", endpoint="token", methods=["POST", "OPTIONS"]),
                Rule(
                    "/fhir/.well-known/smart-configuration", endpoint="discovery", methods=["GET", "OPTIONS"]
                ),
                Rule("/fhir", endpoint="fhir", defaults={"path": ""}),
                Rule("/fhir/", endpoint="fhir", defaults={"path": ""}),
                Rule("/fhir/<path:path>", endpoint="fhir"),
            ],
            strict_slashes=False,
            redirect_defaults=False,
        )

    # -- WSGI -------------------------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        response = self.dispatch(request)
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        adapter = self.url_map.bind_to_environ(request.environ)
        try:
            endpoint, values = adapter.match()
            if request.method == "OPTIONS":
                return Response(status=204, headers=CORS_HEADERS)
            handler = getattr(self, f"on_{endpoint}")
            response: Response = handler(request, **values)
            return response
        except NotFound:
            return html_response(error_page("Not found", "not_found", "There is no such page."), 404)
        except MethodNotAllowed as error:
            response = html_response(error_page("Method not allowed", "method_not_allowed", ""), 405)
            response.headers["Allow"] = ", ".join(error.valid_methods or [])
            return response
        except HTTPException as error:
            return html_response(
                error_page("Error", "http_error", error.description or ""), error.code or 500
            )

    # -- discovery -----------------------------------------------------------------------------------
    def smart_configuration(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "jwks_uri": f"{self.issuer}/auth/jwks",
            "authorization_endpoint": self.auth.settings.authorize_url,
            "token_endpoint": self.auth.settings.token_url,
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic"],
            "token_endpoint_auth_signing_alg_values_supported": list(CLIENT_ASSERTION_SIGNING_ALGS),
            "scopes_supported": SCOPES_SUPPORTED,
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "capabilities": CAPABILITIES,
        }

    def on_discovery(self, request: Request) -> Response:
        return json_response(self.smart_configuration())

    def on_openid(self, request: Request) -> Response:
        return json_response(
            {
                "issuer": self.issuer,
                "authorization_endpoint": self.auth.settings.authorize_url,
                "token_endpoint": self.auth.settings.token_url,
                "jwks_uri": f"{self.issuer}/auth/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": [ID_TOKEN_ALG],
                "scopes_supported": ["openid", "fhirUser", "profile"],
                "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "fhirUser"],
                "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic", "none"],
                "code_challenge_methods_supported": ["S256"],
            }
        )

    def on_jwks(self, request: Request) -> Response:
        return json_response(self.keys.public_jwks())

    def on_style(self, request: Request) -> Response:
        return json_response(SMART_STYLE)

    def on_css(self, request: Request) -> Response:
        css = resources.files("fhir_desens.sandbox").joinpath("static/sandbox.css").read_text("utf-8")
        return Response(css, content_type="text/css; charset=utf-8", headers={"Cache-Control": "max-age=300"})

    # -- OAuth ----------------------------------------------------------------------------------------
    def on_token(self, request: Request) -> Response:
        response = self.auth.token(request)
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
        for name, value in CORS_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    def on_authorize(self, request: Request) -> Response:
        return self._authorize_outcome(self.auth.authorize(request))

    def on_select(self, request: Request) -> Response:
        pending = self.auth.take_pending(request.form.get("pending", ""))
        if pending is not None and request.form.get("decision") == "deny":
            return self._authorize_outcome(self.auth.authorize(pending, Selection(None, None, denied=True)))
        if pending is None:
            return html_response(
                error_page(
                    "Authorization expired", "invalid_request", "Start the launch again from the app."
                ),
                400,
            )
        patient_id = request.form.get("patient", "")
        patient = self.directory.patient(patient_id) if patient_id else None
        practitioner_id = request.form.get("practitioner", "")
        practitioner = self.directory.practitioner(practitioner_id) if practitioner_id else None
        if patient is None:
            return html_response(
                error_page("Unknown patient", "invalid_request", "Pick a listed patient."), 400
            )
        selection = Selection(patient=patient.id, practitioner=practitioner.id if practitioner else None)
        return self._authorize_outcome(self.auth.authorize(pending, selection))

    def _authorize_outcome(self, outcome: Response | NeedsSelection | AuthorizeError) -> Response:
        if isinstance(outcome, AuthorizeError):
            # never redirect to an unverified redirect_uri: show the error to the user instead
            page = error_page(
                "The app's authorization request was refused", outcome.error, outcome.description
            )
            return html_response(page, 400)
        if isinstance(outcome, NeedsSelection):
            redirect_origins = sorted({origin_of(u) for u in outcome.client.redirect_uris})
            page = picker_page(
                pending_id=outcome.pending_id,
                app_name=outcome.client.display_name,
                scope=outcome.scope,
                patients=self.directory.patients(),
                practitioners=self.directory.practitioners(),
            )
            return html_response(page, policy=csp(form_action=redirect_origins))
        outcome.headers["Cache-Control"] = "no-store"
        outcome.headers["Referrer-Policy"] = "no-referrer"
        return outcome

    # -- the EHR ---------------------------------------------------------------------------------------
    def _apps(self) -> list[AppChoice]:
        return [
            AppChoice(c.client_id, c.display_name, c.launch_url) for c in self.clients.all() if c.launch_url
        ]

    def _find_app(self, app: str | None) -> SandboxClient | None:
        """``app`` is a client id or a registered launch URL (never an arbitrary URL: no open redirect)."""
        candidates = [c for c in self.clients.all() if c.launch_url]
        if not app:
            return candidates[0] if len(candidates) >= 1 else None
        return self.clients.get(app) or self.clients.find_by_launch_url(app)

    def _launch_inputs(
        self, request: Request
    ) -> tuple[SandboxClient, PatientChoice, PractitionerChoice | None] | Response:
        client = self._find_app(request.args.get("app"))
        if client is None or not client.launch_url:
            return html_response(
                error_page("Unknown app", "unknown_app", "app must be a registered client id or launch URL."),
                400,
            )
        patient_arg = request.args.get("patient", "")
        patient = self.directory.patient(patient_arg) if patient_arg else None
        if patient is None:
            return html_response(
                error_page(
                    "Unknown patient", "unknown_patient", "patient must be a fixture key or Patient id."
                ),
                404,
            )
        practitioner_arg = request.args.get("practitioner")
        practitioner: PractitionerChoice | None = None
        if practitioner_arg:
            practitioner = self.directory.practitioner(practitioner_arg)
            if practitioner is None:
                return html_response(error_page("Unknown practitioner", "unknown_practitioner", ""), 404)
        else:  # the EHR's signed-in user defaults to the first fixture practitioner
            default = self.directory.default_practitioner()
            practitioner = self.directory.practitioner(default) if default else None
        return client, patient, practitioner

    def on_launcher(self, request: Request) -> Response:
        page = launcher_page(
            patients=self.directory.patients(),
            practitioners=self.directory.practitioners(),
            apps=self._apps(),
            fhir_base_url=self.fhir_base_url,
            issuer=self.issuer,
        )
        return html_response(page)

    def on_launch(self, request: Request) -> Response:
        inputs = self._launch_inputs(request)
        if isinstance(inputs, Response):
            return inputs
        client, patient, practitioner = inputs
        assert client.launch_url is not None
        encounter = request.args.get("encounter") or None
        if encounter is not None and not self.directory.encounter_of(encounter, patient.id):
            return html_response(
                error_page("Unknown encounter", "unknown_encounter", "The encounter is not this patient's."),
                404,
            )
        if encounter is None:
            encounter = self.directory.latest_encounter(patient.id)
        banner = request.args.get("need_patient_banner", "true").lower() not in ("false", "0", "no")
        vendor = request.args.get("vendor") or "permissive"
        if vendor not in PROFILES:
            return html_response(
                error_page(
                    "Unknown vendor profile",
                    "unknown_vendor",
                    f"vendor must be one of {', '.join(PROFILES)}.",
                ),
                400,
            )
        launch_id = self.auth.create_launch(
            LaunchContext(
                patient=patient.id,
                encounter=encounter,
                practitioner=practitioner.id if practitioner else None,
                need_patient_banner=banner,
                client_id=client.client_id,
                vendor=vendor,
            )
        )
        location = add_query(client.launch_url, {"iss": self.fhir_base_url, "launch": launch_id})
        log.info("launch created for client %s", client.client_id)
        return Response(
            status=302,
            headers={"Location": location, "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
        )

    def on_ehr(self, request: Request) -> Response:
        inputs = self._launch_inputs(request)
        if isinstance(inputs, Response):
            return inputs
        client, patient, practitioner = inputs
        assert client.launch_url is not None
        mode = "window" if request.args.get("mode") == "window" else "frame"
        query = {"patient": patient.handle, "app": client.client_id}
        if practitioner:
            query["practitioner"] = practitioner.id
        if request.args.get("vendor") in PROFILES:
            query["vendor"] = request.args["vendor"]
        app = AppChoice(client.client_id, client.display_name, client.launch_url)
        page = ehr_page(patient=patient, practitioner=practitioner, app=app, launch_query=query, mode=mode)
        frame_origins = sorted({origin_of(client.launch_url), *(origin_of(u) for u in client.redirect_uris)})
        return html_response(page, policy=csp(frame_src=frame_origins))

    # -- FHIR -------------------------------------------------------------------------------------------
    def on_fhir(self, request: Request, path: str) -> Response:
        response = self.gateway(request, path)
        for name, value in CORS_HEADERS.items():
            response.headers.setdefault(name, value)
        return response


__all__ = ["CAPABILITIES", "SCOPES_SUPPORTED", "SandboxApp"]
