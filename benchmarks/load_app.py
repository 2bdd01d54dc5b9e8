"""Load test of the app: concurrent planning sessions against gunicorn. Prints figures, asserts nothing.

    .venv/bin/python benchmarks/load_app.py [--sessions 50] [--requests 20] [--workers 2] [--threads 8]
    .venv/bin/python benchmarks/load_app.py --instances 2   # nginx + 2 instances + Redis + PostgreSQL

Starts the demo stack (FHIR server, sandbox EHR, the app served by gunicorn), then, from a thread pool,
``--sessions`` planning sessions at once, each as a browser would do it without cookies or scripts:

1. a real SMART EHR launch through the sandbox (EHR ``/launch`` -> app ``/launch`` -> ``/auth/authorize``
   -> app ``/callback`` -> the session's patient page), the same hops as
   ``tests/integration/test_app_launch.py``;
2. the start form ``/s/<sid>/plan/new`` filled by its labels (docs: notes/ui-contract.md) and posted,
   which creates a draft;
3. ``--requests`` GETs of the worksheet page ``/s/<sid>/plan/<draft>``.

Reports throughput and p50/p95/p99 latency of the worksheet page, and the machine it ran on. The load
generator, the sandbox EHR and the FHIR server share the machine with the app, so the figures are a
lower bound for the app alone.

``--instances N`` runs N app instances (each ``--workers`` x ``--threads``) behind nginx, sharing one
Redis (sessions, drafts) and one PostgreSQL (the bedside record), as docs/deployment.md describes
(tests/cluster.py; Debian's nginx, redis-server and postgresql-15: ``make services``).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests.cluster

from fhir_desens.commands.demo import demo_stack
from fhir_desens.sandbox.server import Sandbox
from tests.cluster import cluster

PATIENT = "carboplatin-ovarian"
BARRIER_SECONDS = 600
DRUG = "carboplatin"
SESSION_PAGE = re.compile(r"/s/([A-Za-z0-9_-]{43})/patient$")
SESSION_ID = re.compile(r"/s/[A-Za-z0-9_-]{43}/")
DRAFT_PAGE = re.compile(r"/s/[A-Za-z0-9_-]{43}/plan/[^/]+$")


class FlowError(RuntimeError):
    """A step of the planning flow did not answer as the UI contract says."""


# -- a small reader of server-rendered forms, by their visible labels -----------------------------------
@dataclass
class Field:
    tag: str
    name: str
    type: str = ""
    value: str = ""
    checked: bool = False
    options: list[tuple[str, str, bool]] = field(default_factory=list)  # (value, text, selected)


@dataclass
class Form:
    action: str
    method: str
    fields: list[Field] = field(default_factory=list)
    by_id: dict[str, Field] = field(default_factory=dict)
    buttons: list[str] = field(default_factory=list)


class FormReader(HTMLParser):
    """Every <form> of a page with its fields, buttons and the <label for=...> texts naming the fields."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self.labels: dict[str, str] = {}
        self._label_for: str | None = None
        self._label_text: list[str] = []
        self._option: tuple[Field, str, bool] | None = None
        self._option_text: list[str] = []
        self._select: Field | None = None
        self._button: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        form = self.forms[-1] if self.forms else None
        if tag == "form":
            self.forms.append(Form(a.get("action", ""), a.get("method", "get").lower()))
        elif tag == "label" and "for" in a:
            self._label_for, self._label_text = a["for"], []
        elif tag in ("input", "select", "textarea") and form is not None and a.get("name"):
            item = Field(tag, a["name"], a.get("type", "text").lower(), a.get("value", ""), "checked" in a)
            form.fields.append(item)
            if a.get("id"):
                form.by_id[a["id"]] = item
            if tag == "select":
                self._select = item
        elif tag == "option" and self._select is not None:
            self._option = (self._select, a.get("value", "\0"), "selected" in a)
            self._option_text = []
        elif tag == "button" and form is not None:
            self._button = []

    def handle_data(self, data: str) -> None:
        if self._label_for is not None:
            self._label_text.append(data)
        if self._option is not None:
            self._option_text.append(data)
        if self._button is not None:
            self._button.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "label" and self._label_for is not None:
            self.labels[self._label_for] = " ".join("".join(self._label_text).split())
            self._label_for = None
        elif tag == "option" and self._option is not None:
            select, value, selected = self._option
            text = " ".join("".join(self._option_text).split())
            select.options.append((text if value == "\0" else value, text, selected))
            self._option = None
        elif tag == "select":
            self._select = None
        elif tag == "button" and self._button is not None and self.forms:
            self.forms[-1].buttons.append(" ".join("".join(self._button).split()))
            self._button = None


def read_forms(html: str) -> tuple[list[Form], dict[str, str]]:
    reader = FormReader()
    reader.feed(html)
    return reader.forms, reader.labels


def form_with_button(html: str, button: str) -> tuple[Form, dict[str, Field]]:
    """The form whose submit button says ``button``, and its fields by label text."""
    forms, labels = read_forms(html)
    for form in forms:
        if button in form.buttons:
            by_label = {labels[i]: f for i, f in form.by_id.items() if i in labels}
            return form, by_label
    raise FlowError(f"no form with a {button!r} button")


def form_values(form: Form) -> dict[str, str]:
    """What the browser would send without any change (hidden fields, defaults, selected options)."""
    values: dict[str, str] = {}
    for item in form.fields:
        if item.tag == "select":
            chosen = [value for value, _, selected in item.options if selected] or [
                value for value, _, _ in item.options[:1]
            ]
            if chosen:
                values[item.name] = chosen[0]
        elif item.type in ("checkbox", "radio"):
            if item.checked:
                values[item.name] = item.value or "on"
        elif item.type not in ("submit", "button", "reset", "file", "image"):
            values[item.name] = item.value
    return values


def choose(item: Field, wanted: Callable[[str], bool]) -> str:
    for value, text, _ in item.options:
        if wanted(text):
            return value
    raise FlowError(f"{item.name}: no option among {[text for _, text, _ in item.options]}")


# -- one planning session ------------------------------------------------------------------------------
def _expect_redirect(response: requests.Response, step: str) -> str:
    if response.status_code not in (302, 303):
        raise FlowError(f"{step}: expected a redirect, got {response.status_code}: {response.text[:300]}")
    return urljoin(response.url, response.headers["Location"])


@dataclass(frozen=True)
class Target:
    """Where the sessions go: the sandbox EHR and the app registered with it (one instance or nginx)."""

    sandbox: Sandbox
    client_id: str


def smart_launch(http: requests.Session, stack: Target, patient: str) -> str:
    """EHR launch through the sandbox; the app's session page URL (``/s/<sid>/patient``)."""
    location = stack.sandbox.launch_url(patient, app=stack.client_id)
    for step in ("EHR /launch", "app /launch", "authorize", "app /callback"):
        location = _expect_redirect(http.get(location, allow_redirects=False, timeout=30), step)
    if not SESSION_PAGE.search(urlsplit(location).path):
        raise FlowError(f"the launch ended at {location}, not on a session page")
    return location


def start_plan(http: requests.Session, patient_page: str) -> str:
    """Fill the start form by its labels (carboplatin 400 mg) and post it; the worksheet page URL."""
    new_plan = urljoin(patient_page, "plan/new")
    page = http.get(new_plan, timeout=30)
    page.raise_for_status()
    form, fields = form_with_button(page.text, "Continue")
    values = form_values(form)
    drug = fields["Drug"]
    try:
        values[drug.name] = choose(drug, lambda text: DRUG in text.lower())
    except FlowError:
        values[drug.name] = choose(drug, lambda text: text.lower().startswith("other drug"))
        values[fields["Other drug"].name] = DRUG
    values[fields["Target dose"].name] = "400"
    values[fields["Dose unit"].name] = choose(fields["Dose unit"], lambda text: text == "mg")
    if "Indication" in fields and not values.get(fields["Indication"].name):
        values[fields["Indication"].name] = "Ovarian carcinoma"
    posted = http.post(
        urljoin(page.url, form.action or page.url), data=values, allow_redirects=False, timeout=30
    )
    worksheet = _expect_redirect(posted, "POST plan/new")
    if not DRAFT_PAGE.search(urlsplit(worksheet).path):
        raise FlowError(f"the start form redirected to {worksheet}, not to a plan page")
    return worksheet


@dataclass(frozen=True)
class Plan:
    """What to measure: the worksheet page (the default) or the patient page (a baseline)."""

    sessions: int
    requests_per_session: int
    page: str = "worksheet"


@dataclass
class SessionResult:
    latencies_ms: list[float] = field(default_factory=list)
    app_ms: list[float] = field(default_factory=list)  # Server-Timing app (smart_app/timing.py)
    cpu_ms: list[float] = field(default_factory=list)  # Server-Timing cpu
    waiting_ms: list[float] = field(default_factory=list)  # latency - app: queueing, proxy, network
    errors: list[str] = field(default_factory=list)


SERVER_TIMING = re.compile(r"(app|cpu);dur=([0-9.]+)")


def planning_session(
    stack: Target, plan: Plan, ready: threading.Barrier, go: threading.Barrier
) -> SessionResult:
    result = SessionResult()
    with requests.Session() as http:
        target = ""
        try:
            patient_page = smart_launch(http, stack, PATIENT)
            target = start_plan(http, patient_page) if plan.page == "worksheet" else patient_page
        except Exception as error:  # any failure must still reach the barrier, or every thread waits
            result.errors.append(f"setup: {describe(error)}")
        ready.wait(timeout=BARRIER_SECONDS)  # every session launched: the measured phase starts together
        go.wait(timeout=BARRIER_SECONDS)
        if target:
            measure(http, target, plan, result)
    return result


def describe(error: Exception) -> str:
    """An error without the URL (session ids travel in URL paths and are not printed)."""
    if isinstance(error, requests.HTTPError) and error.response is not None:
        path = urlsplit(error.response.url).path
        return f"HTTP {error.response.status_code} at {SESSION_ID.sub('/s/<sid>/', path)}"
    return f"{type(error).__name__}: {SESSION_ID.sub('/s/<sid>/', str(error))}"


def measure(http: requests.Session, url: str, plan: Plan, result: SessionResult) -> None:
    for _ in range(plan.requests_per_session):
        start = time.perf_counter()
        try:
            response = http.get(url, timeout=60)
        except requests.RequestException as error:
            result.errors.append(f"{plan.page}: {type(error).__name__}")
            continue
        if response.status_code == 200:
            latency = (time.perf_counter() - start) * 1000
            result.latencies_ms.append(latency)
            timing = dict(SERVER_TIMING.findall(response.headers.get("Server-Timing", "")))
            if "app" in timing:
                result.app_ms.append(float(timing["app"]))
                result.cpu_ms.append(float(timing.get("cpu", "nan")))
                result.waiting_ms.append(latency - float(timing["app"]))
        else:
            result.errors.append(f"{plan.page}: HTTP {response.status_code}")


# -- the run -------------------------------------------------------------------------------------------
def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    index = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


def machine_facts(workers: int, threads: int, instances: int) -> str:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    app = f"gunicorn, {workers} worker(s) x {threads} thread(s)"
    if instances:
        app = (
            f"{instances} instances behind nginx, each {app}; sessions in Redis, bedside record in PostgreSQL"
        )
    return (
        f"machine: {os.cpu_count()} cores ({usable} usable), {platform.machine()}, Python "
        f"{sys.version.split()[0]}, load average {load}\n"
        f"app: {app}; the sandbox EHR, the FHIR server and this load generator run on the same machine"
    )


@contextmanager
def target(workers: int, threads: int, instances: int) -> Iterator[Target]:
    """One app process (``instances`` 0), or ``instances`` behind nginx with Redis and PostgreSQL."""
    if instances:
        with cluster(instances, workers=workers, threads=threads) as running:
            yield Target(running.sandbox, running.client_id)
        return
    with tempfile.TemporaryDirectory(prefix="load-app-") as folder:
        environment = {
            "FHIR_DESENS_SESSION_URL": f"sqlite:///{Path(folder) / 'sessions.sqlite3'}",
            "FHIR_DESENS_LOG_LEVEL": "WARNING",
        }
        serve = ["--server", "gunicorn", "--workers", str(workers), "--threads", str(threads)]
        with demo_stack(serve_args=serve, environment=environment) as stack:
            yield Target(stack.sandbox, stack.client_id)


def run(plan: Plan, workers: int, threads: int, instances: int = 0) -> int:
    with target(workers, threads, instances) as stack:
        print(machine_facts(workers, threads, instances), flush=True)
        ready = threading.Barrier(plan.sessions + 1)
        go = threading.Barrier(plan.sessions + 1)
        with ThreadPoolExecutor(max_workers=plan.sessions) as pool:
            setup_start = time.perf_counter()
            futures = [pool.submit(planning_session, stack, plan, ready, go) for _ in range(plan.sessions)]
            ready.wait(timeout=BARRIER_SECONDS)
            setup_seconds = time.perf_counter() - setup_start
            measured_start = time.perf_counter()
            go.wait(timeout=BARRIER_SECONDS)
            results = [future.result() for future in futures]
            measured_seconds = time.perf_counter() - measured_start
    return report(results, plan, setup_seconds, measured_seconds)


def report(results: list[SessionResult], plan: Plan, setup_seconds: float, seconds: float) -> int:
    latencies = sorted(ms for result in results for ms in result.latencies_ms)
    errors = [error for result in results for error in result.errors]
    setup = "launch + draft" if plan.page == "worksheet" else "launch"
    print(
        f"{plan.sessions} concurrent planning sessions: {setup} of all in {setup_seconds:.1f} s "
        f"({plan.sessions / setup_seconds:.1f} sessions/s)"
    )
    if latencies:
        print(
            f"{plan.page} page: {len(latencies)} of {plan.sessions * plan.requests_per_session} GETs ok "
            f"in {seconds:.1f} s = {len(latencies) / seconds:.1f} req/s; latency "
            f"p50 {percentile(latencies, 0.50):.0f} ms, p95 {percentile(latencies, 0.95):.0f} ms, "
            f"p99 {percentile(latencies, 0.99):.0f} ms, max {latencies[-1]:.0f} ms"
        )
        app = sorted(ms for result in results for ms in result.app_ms)
        cpu = sorted(ms for result in results for ms in result.cpu_ms)
        waiting = sorted(ms for result in results for ms in result.waiting_ms)
        if app:
            print(
                f"  in the app (Server-Timing): p50 {percentile(app, 0.50):.1f} ms, p95 {percentile(app, 0.95):.1f} ms;"
                f" its CPU p50 {percentile(cpu, 0.50):.2f} ms; waiting (queue, proxy, network) "
                f"p50 {percentile(waiting, 0.50):.0f} ms, p95 {percentile(waiting, 0.95):.0f} ms"
            )
    if errors:
        distinct = sorted(set(errors))
        print(f"{len(errors)} errors ({len(distinct)} distinct), e.g. {distinct[:3]}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, default=50, help="concurrent planning sessions (default 50)")
    parser.add_argument("--requests", type=int, default=20, help="worksheet GETs per session (default 20)")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="gunicorn workers (default: cores)"
    )
    parser.add_argument("--threads", type=int, default=8, help="threads per gunicorn worker (default 8)")
    parser.add_argument(
        "--page",
        choices=["worksheet", "patient"],
        default="worksheet",
        help="the page to measure: the plan's worksheet (default) or the patient page (baseline)",
    )
    parser.add_argument(
        "--instances",
        type=int,
        default=0,
        help="N app instances behind nginx sharing Redis and PostgreSQL (default 0: one app, SQLite)",
    )
    args = parser.parse_args(argv)
    return run(Plan(args.sessions, args.requests, args.page), args.workers, args.threads, args.instances)


if __name__ == "__main__":
    sys.exit(main())
