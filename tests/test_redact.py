"""The redaction layer's scrubbing (reconciler/redact.py): every form a registered value may take
in a message, credential shapes wherever they appear, and a stream that never lets half a secret
through. What is classified a credential is tested with the corpus (tests/integration)."""

from __future__ import annotations

import base64
import io
import urllib.parse

import pytest

from reconciler.redact import MASK, REDACTOR, RedactingStream, register, register_url, scrub

TOKEN = "dapi" + "0123456789abcdef0123456789abcdef"


@pytest.fixture
def one_run():
    with REDACTOR.run():
        yield


@pytest.mark.parametrize("text", [
    f"Invalid header value b'Bearer {TOKEN}\\n'",  # the token with a newline, as Python quotes bytes
    f'{{"token": "{TOKEN}\\n"}}',  # as JSON quotes it
    f"https://host/x?token={urllib.parse.quote(TOKEN + chr(10))}",
    f"header {base64.b64encode(TOKEN.encode()).decode()}",
    f"plain {TOKEN} in a sentence",
], ids=["repr", "json", "url", "base64", "plain"])
def test_a_registered_value_is_scrubbed_in_every_form(one_run, text):
    register(TOKEN + "\n")
    assert TOKEN[4:] not in scrub(text) and MASK in scrub(text)


@pytest.mark.parametrize("text, expected", [
    ("Authorization: Bearer abcdefghijklmnop", "Authorization: Bearer ***"),
    ('"authorization": "Basic dXNlcjpwYXNzd29yZA=="', '"authorization": "Basic ***"'),
    ("sent Bearer abcdefghijklmnopqrstuvwx", "sent Bearer ***"),
    ("Basic dXNlcjpwYXNzd29yZA==", "Basic ***"),
    ("a Basic workload", "a Basic workload"),  # not base64 of user:password
    ("postgresql://agent:Hunter2@db:5432/orders", "postgresql://agent:***@db:5432/orders"),
    ("https://agent@docs.example.com/x", "https://agent@docs.example.com/x"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY----- after", "*** after"),
    ("key sk-live-4f9c2a7e1b3d5f7a9c1e3b5d7f9a2c4e6b8d here", "key *** here"),
    ("a bearer token", "a bearer token"),
    ("main.agents.support_agent v3", "main.agents.support_agent v3"),
], ids=["auth-header", "auth-json", "bearer", "basic", "basic-word", "url-password", "url-user", "pem",
        "openai", "prose", "names"])
def test_credential_shapes_are_scrubbed_wherever_they_appear(text, expected):
    assert scrub(text) == expected


def test_short_values_are_not_registered(one_run):
    """A four-letter password would otherwise vanish from every line that holds the word."""
    register("prod")
    assert scrub("prod.agents.bot") == "prod.agents.bot"


def test_a_host_password_is_registered_with_its_user_pair(one_run):
    register_url("https://deployer:Pa55-w0rd@adb-1.azuredatabricks.net")
    pair = base64.b64encode(b"deployer:Pa55-w0rd").decode()
    assert scrub(f"x Pa55-w0rd {pair}") == f"x {MASK} {MASK}"


def test_what_a_run_registered_is_kept_while_any_run_is_active_and_then_forgotten():
    """Tests run several commands at once in one process: one ending must not unmask another's."""
    with REDACTOR.run():
        with REDACTOR.run():
            register("Hunter2-Prod-7c1e")
        assert scrub("Hunter2-Prod-7c1e") == MASK
    assert scrub("Hunter2-Prod-7c1e") == "Hunter2-Prod-7c1e"


def test_a_stream_never_lets_half_a_secret_through(one_run):
    register(TOKEN)
    out = io.StringIO()
    stream = RedactingStream(out)
    stream.write(f"token {TOKEN[:10]}")
    assert out.getvalue() == ""  # held back until the line is whole
    stream.write(f"{TOKEN[10:]} end\nnext")
    assert out.getvalue() == f"token {MASK} end\n"
    stream.flush()  # a prompt without a line break goes out on flush
    assert out.getvalue().endswith("next")
    with pytest.raises(AttributeError):
        stream.buffer  # noqa: B018 - bytes written past it would bypass the scrubbing


def test_prose_about_authorization_is_left_alone():
    """Scrubbing runs over exported manifests and plan files too: a description must survive."""
    assert scrub("Authorization: required for every caller") == "Authorization: required for every caller"
