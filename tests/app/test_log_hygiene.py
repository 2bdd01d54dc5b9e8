"""Log hygiene (issue 11): no session id, token or patient identifier in any log line; no forged lines."""

from __future__ import annotations

import logging

import pytest

from smart_app.log_hygiene import redact

SID = "A" * 43


def test_session_ids_are_written_to_the_log_with_some_500s():
    line = redact(f"Exception on /s/{SID}/patient [GET]")
    assert SID not in line and "/s/<session>/patient" in line


@pytest.mark.parametrize(
    "secret",
    [
        "access_token=eyJabc.def",
        "code=abc123",
        "state=xyz789",
        "Bearer eyJhbGciOi.x.y",
        "Patient/carboplatin-1",
    ],
)
def test_tokens_and_patient_identifiers_never_reach_a_log_line(secret):
    value = secret.split("=", 1)[-1].split(" ", 1)[-1].split("/", 1)[-1]
    assert value not in redact(f"GET /callback?{secret}&x=1 HTTP/1.1")


def test_callback_lets_anyone_write_forged_lines_into_the_log(client, caplog):
    caplog.set_level(logging.DEBUG)
    client.get(
        "/callback", query_string={"state": "x\r\n2026-12-02 INFO forged: admin signed in", "code": "y"}
    )
    client.get(f"/s/{SID}/patient")
    for record in caplog.records:
        message = record.getMessage()
        assert "\n" not in message and "\r" not in message
        assert SID not in message
