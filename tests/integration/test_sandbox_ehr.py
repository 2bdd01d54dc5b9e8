"""The sandbox EHR's own pages (launcher, chart with the framed app) and the `fhir-desens sandbox` command."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests

from fhir_desens.errors import ConfigurationError
from fhir_desens.sandbox.fhir_server import FhirServerProcess
from fhir_desens.sandbox.server import Sandbox
from tests.conftest import in_ci

pytestmark = pytest.mark.integration

APP_ORIGIN = "http://127.0.0.1:9"
LAUNCH_URL = f"{APP_ORIGIN}/app/launch"
HOSTILE_NAME = '<script>alert("x")</script>'


class Tags(HTMLParser):
    """Collects start tags with their attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def find(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]


def parse(html: str) -> Tags:
    tags = Tags()
    tags.feed(html)
    return tags


def get(url: str, **options: Any) -> requests.Response:
    return requests.request("GET", url, timeout=10, allow_redirects=False, **options)


@pytest.fixture(scope="module")
def sandbox(fhir_server: FhirServerProcess) -> Iterator[Sandbox]:
    with Sandbox(fhir_base_url=fhir_server.base_url) as running:
        running.register_client(
            "demo-app", "public", [f"{APP_ORIGIN}/app/callback"], launch_url=LAUNCH_URL, name="Demo"
        )
        running.register_client(
            "hostile",
            "public",
            [f"{APP_ORIGIN}/x/callback"],
            launch_url=f"{APP_ORIGIN}/x/launch",
            name=HOSTILE_NAME,
        )
        yield running


def test_launcher_lists_fixture_patients_practitioners_and_apps(sandbox: Sandbox) -> None:
    response = get(sandbox.launcher_url)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert "frame-ancestors" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    tags = parse(response.text)
    options = {attrs.get("value") for attrs in tags.find("option")}
    assert "carboplatin-ovarian" in options and "nka" in options
    assert sandbox.summary.practitioners["PR-0001"].id in options
    assert "demo-app" in options
    assert not [a for a in tags.find("script")]  # no JavaScript at all
    assert HOSTILE_NAME not in response.text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in response.text


def test_the_chart_frames_the_app_in_a_sandboxed_iframe(sandbox: Sandbox) -> None:
    practitioner = sandbox.summary.practitioners["PR-0102"].id
    response = get(
        f"{sandbox.issuer}/ehr",
        params={"patient": "carboplatin-ovarian", "app": "demo-app", "practitioner": practitioner},
    )
    assert response.status_code == 200
    csp = response.headers["Content-Security-Policy"]
    frame_src = next(d for d in csp.split("; ") if d.startswith("frame-src"))
    assert APP_ORIGIN in frame_src.split()
    assert "'self'" in frame_src.split()
    assert sandbox.summary.patients["carboplatin-ovarian"].display in response.text
    (iframe,) = parse(response.text).find("iframe")
    assert set((iframe["sandbox"] or "").split()) >= {
        "allow-scripts",
        "allow-same-origin",
        "allow-forms",
        "allow-popups",
        "allow-downloads",
    }
    assert "allow-top-navigation" not in (iframe["sandbox"] or "")
    # the frame's first request makes a fresh launch and redirects to the app with iss and launch
    framed = get(urljoin(sandbox.issuer, iframe["src"] or ""))
    assert framed.status_code == 302
    location = framed.headers["Location"]
    assert location.startswith(LAUNCH_URL + "?")
    params = parse_qs(urlsplit(location).query)
    assert params["iss"] == [sandbox.fhir_base_url]
    assert params["launch"][0]
    launch = sandbox.auth.launches.get(params["launch"][0]) if sandbox.auth else None
    assert launch is not None
    assert launch.need_patient_banner is False  # the EHR shows its own banner around the frame
    assert launch.practitioner == practitioner
    assert launch.client_id == "demo-app"


def test_the_chart_can_open_the_app_in_a_new_window_instead(sandbox: Sandbox) -> None:
    response = get(f"{sandbox.issuer}/ehr", params={"patient": "nka", "app": "demo-app", "mode": "window"})
    tags = parse(response.text)
    assert not tags.find("iframe")
    links = [a for a in tags.find("a") if a.get("target") == "_blank"]
    assert links and "need_patient_banner=true" in (links[0]["href"] or "")
    assert links[0]["rel"] == "noopener"


def test_app_names_are_escaped_in_the_chart(sandbox: Sandbox) -> None:
    response = get(f"{sandbox.issuer}/ehr", params={"patient": "nka", "app": "hostile"})
    assert response.status_code == 200
    assert HOSTILE_NAME not in response.text
    assert not parse(response.text).find("script")


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"patient": "no-such-patient", "app": "demo-app"}, 404),
        ({"patient": "nka", "app": "https://evil.example/launch"}, 400),
        ({"patient": "nka", "app": "demo-app", "practitioner": "nobody"}, 404),
    ],
)
def test_bad_launch_requests_are_pages_not_redirects(
    sandbox: Sandbox, params: dict[str, str], status: int
) -> None:
    for path in ("/ehr", "/launch"):
        response = get(f"{sandbox.issuer}{path}", params=params)
        assert response.status_code == status
        assert "Location" not in response.headers


def test_launch_with_an_encounter_of_another_patient_is_refused(sandbox: Sandbox) -> None:
    other = sandbox.summary.patients["nka"].id
    encounter = requests.post(
        f"{sandbox.backend_url}/Encounter",
        json={
            "resourceType": "Encounter",
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": f"Patient/{other}"},
        },
        headers={"Content-Type": "application/fhir+json"},
        timeout=10,
    ).json()
    response = get(sandbox.launch_url("carboplatin-ovarian", app="demo-app", encounter=encounter["id"]))
    assert response.status_code == 404


def test_the_sandbox_command_prints_its_urls_and_serves_until_interrupted(
    fhir_server: FhirServerProcess,
) -> None:
    command = [
        sys.executable, "-m", "fhir_desens.cli", "sandbox", "--port", "0", "--json",
        "--fhir-base-url", fhir_server.base_url,
        "--app-client-id", "cli-app", "--app-launch-url", LAUNCH_URL,
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line, process.stderr.read() if process.stderr else ""
        urls = json.loads(line)
        assert urls["clients"] == ["cli-app"]
        assert "carboplatin-ovarian" in urls["patients"]
        config = get(urls["smart_configuration"]).json()
        assert config["token_endpoint"] == urls["token"]
        launched = get(urljoin(urls["launcher"], "launch"), params={"patient": "nka", "app": "cli-app"})
        assert launched.status_code == 302
        assert launched.headers["Location"].startswith(f"{LAUNCH_URL}?iss=")
    finally:
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        stderr = process.stderr.read() if process.stderr else ""
        if process.stdout:
            process.stdout.close()
        if process.stderr:
            process.stderr.close()
    assert code in (0, 130), stderr
    for secretish in ("access_token", "Bearer "):
        assert secretish not in stderr


def test_a_sandbox_starts_and_stops_its_own_fhir_server() -> None:
    sandbox = Sandbox(port=0, fhir_port=0)
    try:
        sandbox.start()
    except ConfigurationError as error:  # no Node or npm packages here: like the fhir_server fixture
        if in_ci():
            raise
        pytest.skip(f"FHIR server unavailable: {error}")
    try:
        backend = sandbox.backend_url
        assert get(f"{backend}/metadata").status_code == 200
        assert "nka" in sandbox.summary.patients
        issuer = sandbox.issuer
    finally:
        sandbox.stop()
    assert repr(sandbox).startswith("Sandbox(stopped")
    for url in (f"{backend}/metadata", f"{issuer}/.well-known/smart-configuration"):
        with pytest.raises(requests.ConnectionError):
            get(url)
