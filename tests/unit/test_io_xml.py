"""fhir_desens.io.xml and fhir_desens.io.formats: FHIR XML ⇄ JSON and the hardened parser."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from fhir_desens.errors import FhirFormatError, InputError
from fhir_desens.io.formats import detect_format, read_resource, write_resource
from fhir_desens.io.json import dumps
from fhir_desens.io.xml import FHIR_NS, XHTML_NS, json_to_xml, parse_xml, xml_to_json
from fhir_desens.io.xml.parser import hardened_parser

NS = {"f": FHIR_NS, "h": XHTML_NS}


def fhir(body: str, root: str = "Patient") -> str:
    return f'<?xml version="1.0" encoding="UTF-8"?><{root} xmlns="{FHIR_NS}">{body}</{root}>'


def exact(obj: Any) -> str:
    """Key-order-insensitive, Decimal-text-exact form for comparisons."""
    return dumps(obj, sort_keys=True)


def tree(data: bytes) -> etree._Element:
    return etree.fromstring(data)


# ---------------------------------------------------------------- primitives


def test_primitive_types_become_json_types() -> None:
    xml = fhir(
        '<id value="p1"/><active value="true"/><gender value="female"/><birthDate value="1970-01-31"/>'
        '<deceasedBoolean value="false"/><multipleBirthInteger value="2"/>'
    )
    assert xml_to_json(xml) == {
        "resourceType": "Patient",
        "id": "p1",
        "active": True,
        "gender": "female",
        "birthDate": "1970-01-31",
        "deceasedBoolean": False,
        "multipleBirthInteger": 2,
    }


def test_decimals_keep_trailing_zeros_both_ways() -> None:
    xml = fhir(
        '<status value="final"/><code><text value="dose"/></code>'
        '<valueQuantity><value value="0.50"/><unit value="mg"/></valueQuantity>'
        '<component><code><text value="c"/></code><valueQuantity><value value="100.000"/></valueQuantity></component>',
        "Observation",
    )
    doc = xml_to_json(xml)
    value = doc["valueQuantity"]["value"]
    assert type(value) is Decimal and str(value) == "0.50"
    assert str(doc["component"][0]["valueQuantity"]["value"]) == "100.000"
    out = tree(json_to_xml(doc))
    assert out.xpath("f:valueQuantity/f:value/@value", namespaces=NS) == ["0.50"]
    assert out.xpath("f:component/f:valueQuantity/f:value/@value", namespaces=NS) == ["100.000"]


def test_small_decimal_is_written_without_exponent() -> None:
    doc = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "valueQuantity": {"value": Decimal("0.0000001")},
    }
    out = tree(json_to_xml(doc))
    assert out.xpath("f:valueQuantity/f:value/@value", namespaces=NS) == ["0.0000001"]


def test_integer_types_and_booleans_in_backbone_elements() -> None:
    doc = {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p"},
        "medicationCodeableConcept": {"text": "drug"},
        "dosageInstruction": [
            {
                "sequence": 1,
                "asNeededBoolean": False,
                "timing": {"repeat": {"frequency": 3, "period": Decimal("1.0"), "periodUnit": "d"}},
            }
        ],
        "dispenseRequest": {"numberOfRepeatsAllowed": 0},
    }
    xml = json_to_xml(doc)
    back = xml_to_json(xml)
    assert exact(back) == exact(doc)
    repeat = back["dosageInstruction"][0]["timing"]["repeat"]
    assert type(repeat["frequency"]) is int and type(repeat["period"]) is Decimal
    assert back["dosageInstruction"][0]["asNeededBoolean"] is False


def test_primitive_extension_and_id_on_a_single_primitive() -> None:
    xml = fhir(
        '<birthDate id="bd" value="1970-03-30">'
        '<extension url="http://hl7.org/fhir/StructureDefinition/patient-birthTime">'
        '<valueDateTime value="1970-03-30T14:35:45-05:00"/></extension></birthDate>'
        '<gender><extension url="http://example.org/absent"><valueCode value="unknown"/></extension></gender>'
    )
    doc = xml_to_json(xml)
    assert doc == {
        "resourceType": "Patient",
        "_gender": {"extension": [{"url": "http://example.org/absent", "valueCode": "unknown"}]},
        "birthDate": "1970-03-30",
        "_birthDate": {
            "id": "bd",
            "extension": [
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                    "valueDateTime": "1970-03-30T14:35:45-05:00",
                }
            ],
        },
    }
    assert "gender" not in doc  # no value: only _gender
    out = tree(json_to_xml(doc))
    birth = out.find(f"{{{FHIR_NS}}}birthDate")
    assert birth is not None and birth.get("id") == "bd" and birth.get("value") == "1970-03-30"
    assert out.xpath("f:birthDate/f:extension/@url", namespaces=NS) == [
        "http://hl7.org/fhir/StructureDefinition/patient-birthTime"
    ]
    gender = out.find(f"{{{FHIR_NS}}}gender")
    assert gender is not None and gender.get("value") is None
    # FHIR order: gender comes before birthDate even though _gender/birthDate order differed
    assert [etree.QName(el).localname for el in out] == ["gender", "birthDate"]


def test_repeating_primitive_with_nulls_on_both_sides() -> None:
    doc = {
        "resourceType": "Patient",
        "name": [
            {
                "family": "Chalmers",
                "given": ["Peter", None, "James"],
                "_given": [
                    None,
                    {"extension": [{"url": "http://ex/x", "valueString": "middle"}]},
                    {"id": "g3"},
                ],
            }
        ],
    }
    out = tree(json_to_xml(doc))
    given = out.findall(f"{{{FHIR_NS}}}name/{{{FHIR_NS}}}given")
    assert [g.get("value") for g in given] == ["Peter", None, "James"]
    assert [g.get("id") for g in given] == [None, None, "g3"]
    assert len(given[1]) == 1
    back = xml_to_json(etree.tostring(out))
    assert back == doc


def test_repeating_primitive_all_values_no_extensions_has_no_underscore_array() -> None:
    doc = xml_to_json(fhir('<name><given value="A"/><given value="B"/></name>'))
    assert doc["name"] == [{"given": ["A", "B"]}]


def test_repeating_primitive_only_extensions_has_no_value_array() -> None:
    xml = fhir('<name><given id="a"/><given id="b"/></name>')
    assert xml_to_json(xml)["name"] == [{"_given": [{"id": "a"}, {"id": "b"}]}]


def test_single_item_of_a_repeating_element_is_still_an_array() -> None:
    doc = xml_to_json(fhir('<identifier><value value="1"/></identifier>'))
    assert doc["identifier"] == [{"value": "1"}]


def test_element_id_and_extension_url_are_attributes_resource_id_is_an_element() -> None:
    doc = {
        "resourceType": "Patient",
        "id": "pat",
        "extension": [{"id": "e1", "url": "http://ex/e", "valueBoolean": True}],
        "name": [{"id": "n1", "family": "F"}],
    }
    out = tree(json_to_xml(doc))
    assert out.xpath("f:id/@value", namespaces=NS) == ["pat"]
    ext = out.find(f"{{{FHIR_NS}}}extension")
    assert ext is not None
    assert (ext.get("id"), ext.get("url"), len(ext.attrib)) == ("e1", "http://ex/e", 2)
    assert out.xpath("f:name/@id", namespaces=NS) == ["n1"]
    assert xml_to_json(etree.tostring(out)) == doc


def test_choice_elements_keep_their_type_suffix() -> None:
    doc = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "bp"},
        "effectivePeriod": {"start": "2024-01-01T10:00:00+02:00"},
        "valueCodeableConcept": {"text": "x"},
        "extension": [{"url": "http://ex/q", "valueQuantity": {"value": Decimal("1.50"), "unit": "mg"}}],
    }
    back = xml_to_json(json_to_xml(doc))
    assert exact(back) == exact(doc)
    assert str(back["extension"][0]["valueQuantity"]["value"]) == "1.50"


def test_output_is_in_fhir_element_order() -> None:
    doc = {
        "telecom": [{"value": "1"}],
        "name": [{"given": ["A"], "family": "F", "use": "official"}],
        "id": "x",
        "resourceType": "Patient",
        "active": True,
        "meta": {"versionId": "1"},
    }
    out = tree(json_to_xml(doc))
    assert [etree.QName(el).localname for el in out] == ["id", "meta", "active", "name", "telecom"]
    assert [etree.QName(el).localname for el in out[3]] == ["use", "family", "given"]


# ---------------------------------------------------------------- narrative


DIV = '<div xmlns="http://www.w3.org/1999/xhtml"><p>Dose <b>0.50</b> mg &amp; more\u00a0</p><br/></div>'


def test_narrative_div_round_trips_exactly_and_pretty_printing_leaves_it_alone() -> None:
    doc = {"resourceType": "Patient", "text": {"status": "generated", "div": DIV}}
    for pretty in (True, False):
        xml = json_to_xml(doc, pretty=pretty)
        assert xml_to_json(xml) == doc
    xml = json_to_xml(doc, pretty=True)
    assert DIV.encode() in xml  # not re-indented


def test_narrative_with_prefixed_xhtml_is_normalised_to_the_default_namespace() -> None:
    xml = (
        f'<Patient xmlns="{FHIR_NS}" xmlns:h="{XHTML_NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        '<text><status value="generated"/><h:div><h:p class="c">a<h:i>b</h:i>c</h:p></h:div></text></Patient>'
    )
    div = xml_to_json(xml)["text"]["div"]
    assert div == f'<div xmlns="{XHTML_NS}"><p class="c">a<i>b</i>c</p></div>'


def test_narrative_div_drops_unused_inherited_namespaces() -> None:
    xml = (
        f'<Patient xmlns="{FHIR_NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xsi:schemaLocation="http://hl7.org/fhir x.xsd">'
        f'<text><status value="generated"/><div xmlns="{XHTML_NS}">hi</div></text></Patient>'
    )
    assert xml_to_json(xml)["text"]["div"] == f'<div xmlns="{XHTML_NS}">hi</div>'


def test_empty_xhtml_elements_stay_open_for_browsers_but_void_ones_self_close() -> None:
    xml = fhir(
        f'<text><status value="generated"/><div xmlns="{XHTML_NS}"><span/><td></td><br></br><img src="x"/></div></text>'
    )
    div = xml_to_json(xml)["text"]["div"]
    assert div == f'<div xmlns="{XHTML_NS}"><span></span><td></td><br/><img src="x"/></div>'
    out = json_to_xml({"resourceType": "Patient", "text": {"status": "generated", "div": div}}, pretty=False)
    assert b"<span></span><td></td><br/>" in out


@pytest.mark.parametrize(
    ("div", "problem"),
    [
        ("<div>no namespace</div>", "XHTML div"),
        (f'<p xmlns="{XHTML_NS}">not a div</p>', "XHTML div"),
        (f'<div xmlns="{XHTML_NS}">&nbsp;</div>', "not well-formed"),
        (f'<div xmlns="{XHTML_NS}"><p></div>', "not well-formed"),
        (42, "string of XHTML"),
    ],
)
def test_bad_narrative_div_is_refused(div: Any, problem: str) -> None:
    doc = {"resourceType": "Patient", "text": {"status": "generated", "div": div}}
    with pytest.raises(FhirFormatError, match=problem):
        json_to_xml(doc)


def test_narrative_div_from_json_cannot_smuggle_a_doctype() -> None:
    div = f'<!DOCTYPE div [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><div xmlns="{XHTML_NS}">&xxe;</div>'
    with pytest.raises(FhirFormatError) as info:
        json_to_xml({"resourceType": "Patient", "text": {"status": "generated", "div": div}})
    assert "DOCTYPE is not allowed" in str(info.value)
    assert "root:" not in str(info.value)


# ---------------------------------------------------------------- resources inside resources


def test_contained_resources() -> None:
    doc = {
        "resourceType": "MedicationRequest",
        "id": "mr",
        "contained": [
            {"resourceType": "Medication", "id": "med", "code": {"text": "Cefazolin"}},
            {"resourceType": "Practitioner", "id": "pr", "active": True},
        ],
        "status": "active",
        "intent": "order",
        "medicationReference": {"reference": "#med"},
        "subject": {"reference": "Patient/p"},
    }
    out = tree(json_to_xml(doc))
    contained = out.findall(f"{{{FHIR_NS}}}contained")
    assert [etree.QName(c[0]).localname for c in contained] == ["Medication", "Practitioner"]
    assert [etree.QName(el).localname for el in out][:2] == ["id", "contained"]
    assert xml_to_json(etree.tostring(out)) == doc


def test_bundle_with_entries_and_response_outcome() -> None:
    doc = {
        "resourceType": "Bundle",
        "type": "transaction-response",
        "entry": [
            {
                "fullUrl": "urn:uuid:1",
                "resource": {"resourceType": "Patient", "id": "a", "active": True},
                "response": {
                    "status": "201 Created",
                    "outcome": {
                        "resourceType": "OperationOutcome",
                        "issue": [{"severity": "information", "code": "informational"}],
                    },
                },
            },
            {
                "resource": {"resourceType": "Basic", "code": {"text": "x"}},
                "request": {"method": "POST", "url": "Basic"},
            },
        ],
    }
    xml = json_to_xml(doc)
    out = tree(xml)
    assert out.xpath("f:entry/f:resource/*/f:id/@value", namespaces=NS) == ["a"]
    assert out.xpath(
        "f:entry/f:response/f:outcome/f:OperationOutcome/f:issue/f:code/@value", namespaces=NS
    ) == ["informational"]
    # request comes after resource in FHIR order, response after request
    assert [etree.QName(el).localname for el in out.findall(f"{{{FHIR_NS}}}entry")[1]] == [
        "resource",
        "request",
    ]
    assert xml_to_json(xml) == doc


def test_parameters_with_a_resource_and_parts() -> None:
    doc = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "subject", "valueString": "Patient/1"},
            {"name": "plan", "resource": {"resourceType": "PlanDefinition", "status": "draft"}},
            {"name": "nested", "part": [{"name": "n", "valueDecimal": Decimal("2.50")}]},
        ],
    }
    back = xml_to_json(json_to_xml(doc))
    assert exact(back) == exact(doc)
    assert str(back["parameter"][2]["part"][0]["valueDecimal"]) == "2.50"


def test_resource_wrapper_must_hold_exactly_one_resource() -> None:
    two = fhir(
        '<type value="collection"/><entry><resource><Patient/><Patient/></resource></entry>',
        "Bundle",
    )
    with pytest.raises(FhirFormatError, match="exactly one resource"):
        xml_to_json(two)


# ---------------------------------------------------------------- refusals (content)


@pytest.mark.parametrize(
    ("xml", "problem"),
    [
        (fhir('<foo value="x"/>'), "unknown element 'foo'"),
        (fhir('<active value="true"/><active value="false"/>'), "does not repeat"),
        (fhir('<active value="yes"/>'), "boolean value must be true or false"),
        (fhir('<multipleBirthInteger value="2.0"/>'), "not an integer"),
        (fhir('<active value="true">text</active>'), "no text content"),
        (fhir('hello<active value="true"/>'), "no text content"),
        (fhir("<active/>"), "neither a value nor an extension"),
        (fhir('<active value="true" colour="red"/>'), "unexpected attribute"),
        (
            fhir('<name><text value="x"/><given value="a"><period/></given></name>'),
            "may only contain extension",
        ),
        ('<Patient><id value="x"/></Patient>', "not in the FHIR namespace"),
        (fhir("", "HumanName"), "not a FHIR resource type"),
        (fhir("", "Nonsense"), "not a FHIR resource type"),
        (fhir('<id value="x"/><id value="y"/>'), "does not repeat"),
        (fhir('<name id="1"><id value="2"/></name>'), "unknown element 'id'"),
    ],
)
def test_invalid_fhir_xml_is_refused(xml: str, problem: str) -> None:
    with pytest.raises(FhirFormatError, match=problem):
        xml_to_json(xml)


def test_bad_decimal_text_is_refused() -> None:
    xml = fhir(
        '<status value="final"/><code><text value="x"/></code><valueQuantity><value value="1,5"/></valueQuantity>',
        "Observation",
    )
    with pytest.raises(FhirFormatError, match="not a FHIR decimal"):
        xml_to_json(xml)


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        ({"resourceType": "Patient", "active": "true"}, "not a valid JSON value for boolean"),
        ({"resourceType": "Patient", "multipleBirthInteger": True}, "not a valid JSON value for integer"),
        (
            {"resourceType": "Observation", "status": "final", "code": {}, "valueQuantity": {"value": 0.5}},
            "float is not a valid JSON value for decimal",
        ),
        ({"resourceType": "Patient", "name": {"family": "x"}}, "must be a JSON array"),
        ({"resourceType": "Patient", "gender": ["male"]}, "must not be a JSON array"),
        ({"resourceType": "Patient", "foo": 1}, "unknown element 'foo'"),
        ({"resourceType": "Patient", "_name": [{}]}, "only allowed for primitive"),
        ({"resourceType": "Patient", "name": [{"given": ["a", "b"], "_given": [None]}]}, "differ in length"),
        ({"resourceType": "Patient", "name": [{"given": [None]}]}, "neither a value nor an extension"),
        ({"resourceType": "Patient", "_active": {"url": "x"}}, "only id and extension"),
        ({"resourceType": "Nope"}, "not a FHIR resource type"),
        ({"id": "no-type"}, "not a FHIR resource type"),
        ({"resourceType": "Bundle", "entry": [{"resource": {"id": "x"}}]}, "not a FHIR resource type"),
        ({"resourceType": "Patient", "meta": None}, "null is not allowed"),
    ],
)
def test_invalid_fhir_json_is_refused(doc: dict[str, Any], problem: str) -> None:
    with pytest.raises(FhirFormatError, match=problem):
        json_to_xml(doc)


def test_nesting_depth_is_bounded_both_ways() -> None:
    ext: dict[str, Any] = {"url": "http://ex/leaf", "valueString": "x"}
    for _ in range(60):
        ext = {"url": "http://ex/n", "extension": [ext]}
    doc = {"resourceType": "Patient", "extension": [ext]}
    with pytest.raises(FhirFormatError, match="nesting deeper than 50"):
        json_to_xml(doc, max_depth=50)
    xml = json_to_xml(doc, max_depth=100)
    with pytest.raises(FhirFormatError, match="nesting deeper than 50"):
        xml_to_json(xml, max_depth=50)
    assert xml_to_json(xml) == doc


def test_libxml2_depth_limit_applies_to_arbitrary_xml() -> None:
    deep = fhir('<extension url="u">' * 300 + "</extension>" * 300)
    with pytest.raises(FhirFormatError):
        xml_to_json(deep)


# ---------------------------------------------------------------- refusals (hostile XML)

XXE = (
    '<?xml version="1.0"?>\n<!DOCTYPE Patient [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
    f'<Patient xmlns="{FHIR_NS}"><id value="&xxe;"/><name><family value="&xxe;"/></name></Patient>'
)
XXE_PARAMETER = (
    '<?xml version="1.0"?><!DOCTYPE Patient [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>'
    f'<Patient xmlns="{FHIR_NS}"/>'
)
BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(
        f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">'
        for i in range(1, 10)
    )
    + f']><Patient xmlns="{FHIR_NS}"><id value="&lol9;"/></Patient>'
)
EXTERNAL_DTD = (
    '<?xml version="1.0"?><!DOCTYPE Patient SYSTEM "file:///etc/passwd">'
    f'<Patient xmlns="{FHIR_NS}"><id value="x"/></Patient>'
)
PUBLIC_DTD = (
    '<!DOCTYPE Patient PUBLIC "-//X//EN" "http://127.0.0.1:9/x.dtd">'
    f'<Patient xmlns="{FHIR_NS}"><id value="x"/></Patient>'
)


@pytest.mark.parametrize(
    "doc",
    [XXE, XXE_PARAMETER, BILLION_LAUGHS, EXTERNAL_DTD, PUBLIC_DTD],
    ids=["xxe", "xxe-parameter-entity", "billion-laughs", "external-dtd", "public-dtd"],
)
@pytest.mark.parametrize("as_bytes", [True, False], ids=["bytes", "str"])
def test_hostile_documents_are_rejected_and_leak_nothing(doc: str, as_bytes: bool, tmp_path: Path) -> None:
    data: bytes | str = doc.encode() if as_bytes else doc
    with pytest.raises(FhirFormatError) as info:
        xml_to_json(data)
    assert str(info.value) == "DOCTYPE is not allowed in FHIR XML (DTDs and entity declarations are refused)"
    assert "root:" not in repr(info.value)
    # the same through the format-sniffing reader, from bytes and from a file
    path = tmp_path / "hostile.xml"
    path.write_text(doc)
    for source in (doc.encode(), path):
        with pytest.raises(FhirFormatError, match="DOCTYPE is not allowed") as again:
            read_resource(source)
        assert "root:" not in str(again.value)


XXE_IN_TEXT = (
    '<?xml version="1.0"?><!DOCTYPE Patient [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    f'<Patient xmlns="{FHIR_NS}"><text><status value="generated"/>'
    f'<div xmlns="{XHTML_NS}">&xxe;</div></text></Patient>'
)


@pytest.mark.parametrize("doc", [XXE_IN_TEXT, EXTERNAL_DTD], ids=["xxe-in-text", "external-dtd"])
def test_hardened_parser_itself_never_reads_the_disk(doc: str) -> None:
    """Defence in depth: even without the DOCTYPE pre-check the parser loads no entity and no DTD."""
    root = etree.fromstring(doc.encode(), parser=hardened_parser())
    serialized = etree.tostring(root.getroottree())
    assert b"root:" not in serialized
    text = "".join(str(t) for t in root.itertext())
    assert "root:" not in text
    assert text in ("", "&xxe;")  # at most the unexpanded reference


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (fhir("").encode("utf-16"), "UTF-8"),
        (fhir("").replace('encoding="UTF-8"', 'encoding="ISO-8859-1"').encode("latin-1"), "UTF-8"),
        (b"<Patient", "not well-formed"),
        (b"", "not well-formed"),
        (f'<Patient xmlns="{FHIR_NS}"><id value="&undefined;"/></Patient>'.encode(), "not well-formed"),
    ],
)
def test_encoding_and_well_formedness_problems(data: bytes, problem: str) -> None:
    with pytest.raises(FhirFormatError, match=problem):
        xml_to_json(data)


def test_oversize_xml_is_rejected_before_parsing() -> None:
    doc = fhir('<id value="x"/>')
    assert xml_to_json(doc, max_bytes=len(doc)) == {"resourceType": "Patient", "id": "x"}
    with pytest.raises(FhirFormatError, match="too large"):
        xml_to_json(doc.encode(), max_bytes=len(doc) - 1)
    with pytest.raises(FhirFormatError, match="too large"):
        parse_xml(doc, max_bytes=10)
    with pytest.raises(FhirFormatError, match="too large"):
        read_resource(doc.encode(), max_bytes=10)


def test_comments_processing_instructions_and_schema_location_are_ignored() -> None:
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?><?xml-stylesheet href="x"?>'
        f'<Patient xmlns="{FHIR_NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xsi:schemaLocation="http://hl7.org/fhir ../../schema/patient.xsd">'
        '<!-- a comment --><id value="c"/><!-- another --></Patient>'
    )
    assert xml_to_json(xml) == {"resourceType": "Patient", "id": "c"}


# ---------------------------------------------------------------- formats


PATIENT = {"resourceType": "Patient", "id": "p", "active": True, "name": [{"family": "Zoë"}]}


@pytest.mark.parametrize("fmt", ["json", "xml"])
@pytest.mark.parametrize("pretty", [True, False])
def test_write_then_read_resource_in_both_formats(fmt: Any, pretty: bool, tmp_path: Path) -> None:
    data = write_resource(PATIENT, fmt, pretty=pretty)
    assert detect_format(data) == fmt
    assert read_resource(data) == PATIENT
    path = tmp_path / "resource.bin"  # the name plays no part in the format
    path.write_bytes(data)
    assert read_resource(path) == PATIENT
    assert read_resource(str(path)) == PATIENT


def test_write_resource_json_keeps_decimals_and_xml_has_a_declaration() -> None:
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "valueQuantity": {"value": Decimal("0.50")},
    }
    assert b'"value": 0.50' in write_resource(obs, "json")
    xml = write_resource(obs, "xml")
    assert xml.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    assert b'<value value="0.50"/>' in xml


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "empty document"),
        (b"   \n", "empty document"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"id": "x"}', "resourceType"),
        (b"hello", "not a FHIR document"),
        ("\ufeff{}".encode("utf-16-le"), "UTF-16"),
    ],
)
def test_read_resource_refuses_non_fhir_documents(data: bytes, problem: str) -> None:
    with pytest.raises(FhirFormatError, match=problem):
        read_resource(data)


def test_read_resource_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read file"):
        read_resource(tmp_path / "missing.json")


def test_write_resource_refuses_bad_arguments() -> None:
    with pytest.raises(InputError, match="unknown format"):
        write_resource(PATIENT, "yaml")  # type: ignore[arg-type]
    with pytest.raises(FhirFormatError, match="resourceType"):
        write_resource({"id": "x"}, "json")
