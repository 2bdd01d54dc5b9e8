"""Reading the app's server-rendered HTML in HTTP-level tests (visible text, alerts, form values, tables)."""

from __future__ import annotations

import html as html_module
import re


def text_of(html: str) -> str:
    """Visible text, whitespace collapsed (inline SVG left out)."""
    html = re.sub(r"<svg.*?</svg>", " ", html, flags=re.S)
    return " ".join(html_module.unescape(re.sub(r"<[^>]+>", " ", html)).split())


def alerts(html: str) -> str:
    """The text of every element with role="alert"."""
    return " ".join(
        text_of(m) for m in re.findall(r'role="alert"[^>]*>(.*?)</(?:div|p|section)>', html, re.S)
    )


def _select(html: str, select_id: str) -> str:
    select = re.search(rf'<select id="{select_id}".*?</select>', html, re.S)
    assert select is not None, f"no select {select_id}"
    return select.group(0)


def selected_value(html: str, select_id: str) -> str:
    found = re.search(r'<option value="([^"]*)"[^>]*selected', _select(html, select_id))
    assert found is not None, select_id
    return html_module.unescape(found.group(1))


def selected_text(html: str, select_id: str) -> str:
    found = re.search(r"<option[^>]*selected[^>]*>(.*?)</option>", _select(html, select_id), re.S)
    assert found is not None, select_id
    return text_of(found.group(1))


def option_value(html: str, select_id: str, text: str) -> str:
    """The value of the first option whose text starts with ``text``."""
    for value, label in re.findall(
        r'<option value="([^"]*)"[^>]*>(.*?)</option>', _select(html, select_id), re.S
    ):
        if text_of(label).startswith(text):
            return html_module.unescape(value)
    raise AssertionError(f"no option {text!r} in {select_id}")


def input_value(html: str, name: str) -> str:
    found = re.search(rf'<input id="{name}" name="{name}"[^>]*value="([^"]*)"', html)
    assert found is not None, name
    return html_module.unescape(found.group(1))


#: The start form's risk questions answered explicitly, as a clinician does: an unanswered criterion is
#: "not known", never "no" (RISK-CHART-2).
NO_RISK = {
    "grade": "",
    "hypotension_or_hypoxia": "no",
    "cardiac_or_beta_blocker": "no",
    "fev1_below_80": "no",
}


def start_form_values(html: str) -> dict[str, str]:
    """The plan start form (``/plan/new``) as the chart pre-filled it: drug, dose, indication, height and
    weight, with the risk questions answered "no" (:data:`NO_RISK`)."""
    return {
        "drug": selected_value(html, "drug"),
        "target_dose": input_value(html, "target_dose"),
        "dose_unit": selected_value(html, "dose_unit"),
        "indication": input_value(html, "indication"),
        "height_cm": input_value(html, "height_cm"),
        "weight_kg": input_value(html, "weight_kg"),
        **NO_RISK,
    }


def table_rows(html: str, table_id: str) -> list[list[str]]:
    """The body rows of a table as lists of cell texts."""
    table = re.search(rf'<table[^>]*id="{table_id}".*?</table>', html, re.S)
    assert table is not None, f"no table {table_id}"
    body = table.group(0).split("<tbody>", 1)[1]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)
    return [[text_of(c) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)] for row in rows]
