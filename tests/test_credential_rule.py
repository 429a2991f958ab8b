"""The design's secret-looking rule (`*_KEY`, `*TOKEN*`, `*SECRET*`, `*PASSWORD*` must hold a
`{{secrets/...}}` reference), and where it stops: a number or boolean is a setting."""

import pytest

from reconciler.terms import plain_credential


@pytest.mark.parametrize("name, value, expected, reason", [
    ("OPENAI_API_KEY", "sk-abc", True, "a key by its name"),
    ("HF_TOKEN", "hf_abcdef", True, "a token by its name"),
    ("DB_PASSWORD", "hunter2", True, "a password by its name"),
    ("OPENAI_API_KEY", "{{secrets/support/openai}}", False, "a reference is what we want"),
    ("MAX_TOKENS", "1024", False, "an LLM setting: a number is never a credential"),
    ("TOKEN_BUDGET_ENABLED", "true", False, "a boolean is never a credential"),
    ("ENDPOINT_URL", "https://user:pw@example.com", True, "a URL carrying a password, whatever its name"),
    ("NOTES", "sk-" + "a" * 20, True, "an OpenAI-shaped key, whatever its name"),
])
def test_plain_credential(name, value, expected, reason):
    assert plain_credential(name, value) is expected, reason
