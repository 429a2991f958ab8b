"""The one redaction layer: nothing secret leaves the process, whatever path it takes out.

Two halves, used together:

- **Classifying plain values** (`detected`): is a value someone put in an environment variable a
  credential? `terms.plain_credential` asks its own name and shape rules first and then this,
  which runs the maintained detectors of Yelp's detect-secrets (its own plugins and false-positive
  filters, not a hand-written copy): every regex detector it ships (AWS, Azure storage keys, basic
  auth in URLs, JWTs, private keys, GitHub, GitLab, Slack, Stripe, OpenAI, npm, PyPI, Twilio,
  SendGrid, Discord, Telegram, Mailchimp, Artifactory, IBM, Square, SoftLayer, Cloudant), its
  keyword detector on `NAME=value` and on the value itself (so `DB_PASS`, `OPENAI_APIKEY`, a JDBC
  URL's `password=`, a connection string's `Password=` and a JSON blob's `"password"` are found),
  and its base64 high-entropy detector at its default limit (4.5 bits per character). Left out on
  purpose: its hex high-entropy detector (every endpoint id, run id and experiment id is
  high-entropy hex: it would hide them all) and its public-IP detector (an address is not a
  credential). detect-secrets is imported on first use only: most values are decided by the
  cheap rules (a `{{secrets/...}}` reference, a number, a credential-looking name).

- **Scrubbing text on its way out** (`scrub`, `RedactingStream`): the CLI wraps stdout and stderr,
  and `files.write_files` scrubs every file it writes (plan files, exported manifests), so exception
  text, SDK log lines and anything else printed pass through here. It removes every value
  `register`ed (the workspace token and every other credential the SDK's config marks sensitive,
  the password in a host URL, variables that look like credentials, plain credentials found
  live) in every form it may take in a message (as is, without surrounding whitespace, escaped
  as Python or JSON would quote it, URL-encoded, base64 as in a Basic auth header), and shapes
  that are credentials wherever they appear: `Authorization:` / `Bearer` / `Basic` values,
  passwords in URLs, private key blocks, and the token shapes of `terms.CREDENTIAL_VALUE`.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import re
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Any

from reconciler.terms import CREDENTIAL_VALUE

HIDDEN = "(plain value hidden)"
MASK = "***"
MIN_REGISTERED = 6  # shorter values are not scrubbed from free text: "prod" would vanish from every line

# ---- classifying plain values -----------------------------------------------------------------------

_LEFT_OUT = {"IPPublicDetector"}  # an address is not a credential


@functools.lru_cache(maxsize=1)
def _detectors() -> tuple[list[Any], Any, Any, Any]:
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.filters import heuristic
    from detect_secrets.plugins.base import RegexBasedDetector
    from detect_secrets.plugins.high_entropy_strings import Base64HighEntropyString
    from detect_secrets.plugins.keyword import KeywordDetector

    plugins: list[Any] = list(get_mapping_from_secret_type_to_class().values())
    regex = [plugin() for plugin in plugins if issubclass(plugin, RegexBasedDetector) and plugin.__name__ not in _LEFT_OUT]
    return regex, KeywordDetector(), Base64HighEntropyString(limit=4.5), heuristic


def _filtered(secret: str, line: str, plugin: Any, heuristic: Any, *, shaped: bool = False) -> bool:
    """detect-secrets' own false-positive filters (its default set, less those about files). A
    match of a detector for one service's token shape (`shaped`) is only filtered as a placeholder
    (`${NPM_TOKEN}`): its id-like and UUID filters exist for the keyword and entropy detectors,
    and an npm token is a UUID."""
    if heuristic.is_templated_secret(secret) or heuristic.is_prefixed_with_dollar_sign(secret):
        return True
    return not shaped and bool(
        heuristic.is_sequential_string(secret) or heuristic.is_potential_uuid(secret)
        or heuristic.is_likely_id_string(secret, line, plugin) or heuristic.is_indirect_reference(line)
        or heuristic.is_not_alphanumeric_string(secret))


@functools.lru_cache(maxsize=8192)
def detected(name: str, value: str) -> bool:
    """Whether detect-secrets finds a credential in environment variable `name` holding `value`.

    The plugins' `analyze_string` is called directly: their `analyze_line` may verify a finding
    against the service it belongs to (over the network), which a plan must never do."""
    from detect_secrets.plugins.keyword import CONFIG_DENYLIST_REGEX_TO_GROUP

    regex, keyword, entropy, heuristic = _detectors()
    for plugin in regex:
        if any(not _filtered(found, value, plugin, heuristic, shaped=True) for found in plugin.analyze_string(value)):
            return True
    # As a `.env`/`.properties` line would hold it (the name says so), and as it is (a connection
    # string or a JSON blob may name its password inside the value).
    for line in (f"{name}={value}", value):
        for found in keyword.analyze_string(line, denylist_regex_to_group=CONFIG_DENYLIST_REGEX_TO_GROUP):
            if found and not _filtered(found, line, keyword, heuristic):
                return True
    quoted = '"' + value.replace('"', "") + '"'  # the entropy plugin looks at quoted strings only
    return any(entropy.calculate_shannon_entropy(found) > entropy.entropy_limit
               and not _filtered(found, value, entropy, heuristic) for found in entropy.analyze_string(quoted))


# ---- scrubbing text on its way out -------------------------------------------------------------------

# Shapes that are credentials wherever they appear in text: the value of an Authorization header
# (quoted by a server that echoes the request), a `Bearer` token, a `Basic` credential (base64 of
# user:password), a URL's password, a private key block.
_SHAPES = re.compile(
    r"(?P<head>(?i:authorization)[\"']?\s*[:=]\s*[\"']?(?:(?i:bearer|basic|token) +)?)(?P<auth>[A-Za-z0-9._~+/=-]{12,})"
    r"|(?P<bearer>\b[Bb]earer )(?P<token>[A-Za-z0-9._~+/=-]{12,})"
    r"|(?P<basic>\bBasic )(?P<b64>[A-Za-z0-9+/]{6,}={0,2})"
    r"|(?P<scheme>://)(?P<user>[^/\s:@'\"]+):(?P<password>[^/\s@'\"]+)(?=@)"
    r"|-----BEGIN[A-Z ]*PRIVATE KEY( BLOCK)?-----.*?(-----END[A-Z ]*PRIVATE KEY( BLOCK)?-----|$)",
    re.DOTALL)


def _mask_shapes(match: re.Match[str]) -> str:
    if match.group("auth"):
        return match.group("head") + MASK
    if match.group("token"):
        return match.group("bearer") + MASK
    if match.group("b64"):
        try:  # only what decodes to user:password is a Basic credential ("Basic workload" is not)
            decoded = base64.b64decode(match.group("b64") + "==", validate=False).decode("utf-8")
        except ValueError:
            return match.group(0)
        return match.group("basic") + MASK if ":" in decoded and decoded.isprintable() else match.group(0)
    if match.group("password"):
        return f"://{match.group('user')}:{MASK}"
    return MASK


class Redactor:
    """Values that must never be printed, and the scrubbing of text that might hold them."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()
        self._runs = 0

    def register(self, value: str | None) -> None:
        """Never print `value`, in any of the forms a message may quote it in."""
        if not value:
            return
        core = value.strip()
        forms = {core, value.encode("unicode_escape").decode("ascii"), json.dumps(value)[1:-1],
                 urllib.parse.quote(core, safe=""), urllib.parse.quote_plus(core),
                 base64.b64encode(core.encode()).decode().rstrip("=")}
        forms = {form for form in forms if len(form) >= MIN_REGISTERED}
        with self._lock:
            if forms - self._values:
                self._values |= forms
                self._pattern = None

    def register_url(self, url: str | None) -> None:
        """A URL's password (and its user:password pair, as a Basic auth header encodes it)."""
        if not url:
            return
        parts = urllib.parse.urlsplit(url if "://" in url else f"https://{url}")
        if parts.password:
            self.register(parts.password)
            self.register(urllib.parse.unquote(parts.password))
            self.register(f"{parts.username}:{parts.password}")

    def scrub(self, text: str) -> str:
        with self._lock:
            if self._pattern is None and self._values:
                # Longest first, so a value is never left half-replaced by one of its own parts.
                self._pattern = re.compile("|".join(re.escape(v) for v in sorted(self._values, key=len, reverse=True)))
            pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(MASK, text)
        text = _SHAPES.sub(_mask_shapes, text)
        return CREDENTIAL_VALUE.sub(_mask_shape, text)

    @contextlib.contextmanager
    def run(self) -> Iterator[None]:
        """One command's run: what it registered is forgotten once no run is active any more (a
        process runs one command; tests run many, some at once, in one process)."""
        with self._lock:
            self._runs += 1
        try:
            yield
        finally:
            with self._lock:
                self._runs -= 1
                if not self._runs:
                    self._values.clear()
                    self._pattern = None


def _mask_shape(match: re.Match[str]) -> str:
    found = match.group(0)
    if "://" in found:  # a URL with a password (already masked above): keep it as it is now
        return found
    return MASK


REDACTOR = Redactor()
register = REDACTOR.register
register_url = REDACTOR.register_url
scrub = REDACTOR.scrub


def hidden(value: str) -> str:
    """What a plain credential found in a value shows as; the value itself is never printed
    anywhere else either (a server error or a policy message quoting it is scrubbed)."""
    register(value)
    return HIDDEN


class RedactingStream:
    """A text stream (stdout, stderr) whose every line is scrubbed before it is written.

    Text is passed on a whole line at a time (a secret split over two `write` calls is still
    seen whole); what is left without a line break goes out on `flush` (a prompt). There is no
    `buffer`: writing bytes past this wrapper would bypass it (click then writes text)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self._pending = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self._pending += text
            if "\n" in self._pending:
                done, _, self._pending = self._pending.rpartition("\n")
                self.stream.write(scrub(done + "\n"))
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if self._pending:
                self.stream.write(scrub(self._pending))
                self._pending = ""
        self.stream.flush()

    def isatty(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())

    def writable(self) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:
        if name == "buffer":
            raise AttributeError(name)
        return getattr(self.stream, name)
