"""[tool.pytest-incident.redact] in pyproject.toml: what each key adds or keeps, and every
mistake at its line with what is allowed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_incident.core.redaction import PLACEHOLDER_RE, RedactionRules, Redactor
from pytest_incident.core.redaction_config import rules_from_pyproject
from pytest_incident.model.errors import ConfigFileError
from tests.spans import server_span

PATH = Path("pyproject.toml")
HEAD = '[project]\nname = "app"\n\n[tool.pytest-incident.redact]\n'


def test_no_table_is_the_defaults() -> None:
    assert rules_from_pyproject(PATH, '[project]\nname = "app"\n') == RedactionRules()
    assert rules_from_pyproject(PATH, "") == RedactionRules()


def test_every_key() -> None:
    rules = rules_from_pyproject(
        PATH,
        HEAD + 'headers = ["X-Session", "X-*-Signature"]\n'
        'fields = ["SSN"]\n'
        'json_paths = ["items.*.serial"]\n'
        "patterns = ['sk_(live|test)_[0-9A-Za-z]+']\n"
        'keep = ["cards", "header:Cookie", "field:token_type"]\n',
    )
    assert rules.headers == ("x-session", "x-*-signature")
    assert rules.fields == ("ssn",)
    assert rules.json_paths == (("items", "*", "serial"),)
    assert [p.pattern for p in rules.patterns] == ["sk_(live|test)_[0-9A-Za-z]+"]
    assert rules.cards is False
    assert rules.keep_headers == {"cookie"} and rules.keep_fields == {"token_type"}
    span = server_span(
        **{
            "incident.request.headers": json.dumps({"cookie": "a=b", "x-session": "s"}),
            "incident.request.body": json.dumps(
                {"token_type": "bearer", "ssn": "078-05-1120", "note": "use sk_test_abc123"}
            ),
        }
    )
    (out,) = Redactor(rules, b"k").redact([span])
    found = json.loads(out.attributes["incident.request.headers"])
    body = json.loads(out.attributes["incident.request.body"])
    assert found["cookie"] == "a=b" and PLACEHOLDER_RE.fullmatch(found["x-session"])
    assert body["token_type"] == "bearer" and PLACEHOLDER_RE.fullmatch(body["ssn"])
    assert PLACEHOLDER_RE.fullmatch(body["note"].removeprefix("use "))


def test_a_dotted_table_in_tool_is_read_too() -> None:
    text = '[tool.pytest-incident]\nredact = { fields = ["ssn"] }\n'
    assert rules_from_pyproject(PATH, text).fields == ("ssn",)


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ('colour = ["red"]\n', 5, "unknown key 'colour'; allowed: headers, fields, json_paths"),
        ('headers = "X-Token"\n', 5, "headers: expected a list of strings"),
        ('fields = ["ok", 3]\n', 5, "fields: expected a list of strings"),
        ('headers = [\n  "ok",\n  "bad header",\n]\n', 7, "'bad header' is not a header name"),
        ("patterns = ['(unclosed']\n", 5, "'(unclosed' is not a regular expression"),
        ("patterns = ['a*']\n", 5, "matches the empty string"),
        ('json_paths = ["a..b"]\n', 5, "'a..b' is not a JSON path"),
        ('keep = ["header:accept"]\n', 5, "the defaults do not redact header 'accept'"),
        ('keep = ["field:email"]\n', 5, "the defaults do not redact field 'email'"),
        ('keep = ["everything"]\n', 5, "allowed: 'cards', 'header:NAME' or 'field:NAME'"),
        ('headers = ["a"\n', 5, "not valid TOML: Unclosed array"),
        ('headers = ["a"]\nfields = [1\n2]\n', 7, "not valid TOML"),
    ],
)
def test_mistakes_are_reported_at_their_line(body: str, line: int, message: str) -> None:
    with pytest.raises(ConfigFileError) as caught:
        rules_from_pyproject(PATH, HEAD + body)
    assert caught.value.line == line
    assert message in caught.value.message
    assert str(caught.value).startswith(f"pyproject.toml:{line}: ")


def test_the_table_must_be_a_table() -> None:
    with pytest.raises(ConfigFileError, match="must be a table"):
        rules_from_pyproject(PATH, '[tool.pytest-incident]\nredact = "all"\n')
