"""PII and secret masking: every detector, positive and negative; nested values;
secret-named keys; custom patterns (hostile ones included); idempotence."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipyard.errors import InvalidInput
from shipyard.identity.credentials import new_api_key
from shipyard.tracing.masking import (
    DETECTORS,
    MAX_CUSTOM,
    MAX_PATTERN_CHARS,
    Masker,
    iban_ok,
    luhn,
    secret_key,
    validate_custom,
)

M = Masker()


def only(detector: str) -> Masker:
    return Masker(detectors=[detector])


@pytest.fixture(autouse=True)
def _the_fast_check_never_misses(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ingest asks `changes`/`which` first and masks only what they name: every text any
    test here masks must be named by both (alone, and among other texts), or PII that
    `mask` catches would be stored."""
    real = Masker.mask

    def checked(self: Masker, text: str) -> str:
        out = real(self, text)
        if out != text:
            shown = text if len(text) < 200 else text[:200] + "..."
            assert self.changes([text]), f"changes() missed {shown!r}"
            assert 1 in self.which([["no pii", "x"], [text], ["7"]]), f"which() missed {shown!r}"
            assert 0 in self.which([["a", text]]), f"which() missed {shown!r} after a string"
        return out

    monkeypatch.setattr(Masker, "mask", checked)


# --- e-mail -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "bob@example.com",
        "bob.smith+tag@mail.example.co.uk",
        "first_last-1%x@sub-domain.example.io",
        "josé@exämple.com",
        "x@y.museum",
    ],
)
def test_email_masked(text: str) -> None:
    assert only("email").mask(f"write to {text}, please") == "write to [EMAIL], please"


def test_email_at_end_of_sentence_and_start_of_text() -> None:
    assert M.mask("@bob hi; mail bob@example.com.") == "@bob hi; mail [EMAIL]."
    assert M.mask("bob@example.com") == "[EMAIL]"


@pytest.mark.parametrize(
    "text", ["a@b", "@handle", "user@localhost", "price: 3 @ 4.50", "foo@bar.1", "git@"]
)
def test_not_an_email(text: str) -> None:
    assert only("email").mask(text) == text


# --- phone ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "phone",
    [
        "+44 20 7946 0958",
        "+14155552671",
        "+1 (415) 555-2671",
        "+49 30 1234567",
        "+33 6 12 34 56 78",
        "(555) 123-4567",
        "555-123-4567",
        "555.123.4567",
        "020 7946 0958",
        "06 12 34 56 78",
        "030-1234-5678",
    ],
)
def test_phone_masked(phone: str) -> None:
    assert only("phone").mask(f"call {phone} now") == "call [PHONE] now"


def test_phone_in_a_uri() -> None:
    assert only("phone").mask("tel:+14155552671, tel:555-123-4567") == "tel:[PHONE], tel:[PHONE]"
    assert only("phone").mask("https://wa.me/+447946095800") == "https://wa.me/[PHONE]"


@pytest.mark.parametrize(
    "text",
    [
        "1234567890",  # a plain number
        "order 987654321012",
        "2024-01-15",
        "2024-01-15 10:30:00",
        "2024-01-15T10:30:00.123456Z",
        "2024.01.15.123456",
        "123e4567-e89b-12d3-a456-426614174000",
        "12345678-1234-1234-1234-123456789012",  # a UUID of digits only
        "version 1.2.3 and 10.0.19041.1",
        "1 000 000 000 tokens",
        "555-1234",  # too short
        "+12 345",  # too short
        "3.14159265358979",
        "ids 12-34-56",
        "/v1/items/555-123-4567x",
    ],
)
def test_not_a_phone(text: str) -> None:
    assert only("phone").mask(text) == text


# --- credit cards -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "card",
    [
        "4111111111111111",
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "5555 5555 5555 4444",
        "378282246310005",  # Amex, 15
        "6011 1111 1111 1117",  # Discover
        "3530111333300000",  # JCB
        "4222222222222",  # Visa, 13
    ],
)
def test_card_masked(card: str) -> None:
    assert luhn(card.replace(" ", "").replace("-", ""))
    assert only("credit_card").mask(f"card {card}.") == "card [CARD]."


@pytest.mark.parametrize(
    "text",
    [
        "4111 1111 1111 1112",  # fails Luhn
        "4111111111111112",
        "411111111111",  # 12 digits
        "41111111111111111111",  # 20 digits
        "1700000000000",  # an epoch in milliseconds (no card starts with 1)
        "0.4111111111111111",
        "12345678-1234-1234-1234-123456789012",
    ],
)
def test_not_a_card(text: str) -> None:
    assert only("credit_card").mask(text) == text


# --- IBAN -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "iban",
    [
        "DE89 3704 0044 0532 0130 00",
        "DE89370400440532013000",
        "GB82 WEST 1234 5698 7654 32",
        "FR14 2004 1010 0505 0001 3M02 606",
        "NL91ABNA0417164300",
    ],
)
def test_iban_masked(iban: str) -> None:
    assert iban_ok(iban.replace(" ", ""))
    assert only("iban").mask(f"pay to {iban}, thanks") == "pay to [IBAN], thanks"


def test_iban_followed_by_capitals() -> None:
    assert only("iban").mask("DE89 3704 0044 0532 0130 00 OK") == "[IBAN] OK"


@pytest.mark.parametrize(
    "text",
    [
        "DE88 3704 0044 0532 0130 00",  # bad check digits
        "GB00WEST12345698765432",
        "XDE89370400440532013000",  # inside a longer word
        "AB12",
        "ISO 8601 and RFC 3339",
    ],
)
def test_not_an_iban(text: str) -> None:
    assert only("iban").mask(text) == text


# --- IP addresses -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "ip",
    [
        "192.168.1.10",
        "10.0.0.1",
        "255.255.255.255",
        "2001:db8::8a2e:370:7334",
        "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
        "::1",
        "fe80::1%eth0",
        "::ffff:10.0.0.1",
    ],
)
def test_ip_masked(ip: str) -> None:
    assert only("ip").mask(f"from {ip}, then") == "from [IP], then"


@pytest.mark.parametrize(
    "text",
    [
        "256.1.1.1",
        "1.2.3.4.5",
        "v1.2.3.4",
        "10:30:00",
        "a::b",
        "std::vector",
        "00:1A:2B:3C:4D:5E",
        "01.02.03.04",
        "version 10.0.19041.1",
    ],
)
def test_not_an_ip(text: str) -> None:
    assert only("ip").mask(text) == text


# --- secrets ----------------------------------------------------------------------------

SECRETS = [
    "sk-abcdefghijklmnopqrstuvwxyz0123456789",
    "sk-proj-abcDEF123_-abcdefghijklmnopqrstuvwxyz",
    "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789-AA",
    "AKIAIOSFODNN7EXAMPLE",
    "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
    "xoxb-123456789012-abcdefABCDEF",
    "AIzaSyA-1234567890abcdefghijklmnopqrstu",
    "sk_live_51H8abcdefghijklmnopqrstuv",
    "rk_test_51H8abcdefghijklmnopqrstuv",
    "hf_abcdefghijklmnopqrstuvwxyzABCDEFGH",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dGhlIHNpZ25hdHVyZQ",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\nabc+/=\n-----END RSA PRIVATE KEY-----",
    "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----",
]


@pytest.mark.parametrize("secret", SECRETS)
def test_secret_masked(secret: str) -> None:
    assert only("secret").mask(f"key {secret} here") == "key [SECRET] here"


def test_shipyard_key_masked() -> None:
    key, _, _ = new_api_key()
    assert only("secret").mask(f"export SHIPYARD_KEY {key}") == "export SHIPYARD_KEY [SECRET]"


def test_truncated_private_key_masked_to_the_end() -> None:
    text = "cut: -----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIB"
    assert only("secret").mask(text) == "cut: [SECRET]"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("Authorization: Bearer abc.def-123_XYZ", "Authorization: Bearer [SECRET]"),
        ("authorization: Basic dXNlcjpwYXNz", "authorization: Basic [SECRET]"),
        ("curl -H 'bearer abcdefgh12345'", "curl -H 'bearer [SECRET]'"),
        ("password=hunter2 next", "password=[SECRET] next"),
        ("db_password = 'p@ss w0rd'", "db_password = '[SECRET]'"),
        ('{"api_key": "abc123", "n": 1}', '{"api_key": "[SECRET]", "n": 1}'),
        ("secret: swordfish", "secret: [SECRET]"),
        ("PASSWD:xyz", "PASSWD:[SECRET]"),
        ("client_secret=abc&x=1", "client_secret=[SECRET]&x=1"),
        ("x-api-key: k-123", "x-api-key: [SECRET]"),
        ("aws_secret_access_key=wJalrXUtnFEMI/K7MDENG", "aws_secret_access_key=[SECRET]"),
        ("access_token=abc.def", "access_token=[SECRET]"),
    ],
)
def test_secret_assignments(text: str, masked: str) -> None:
    assert only("secret").mask(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "max_tokens=100",
        "prompt_tokens: 12",
        "the secret of good soup",
        "sk-short",
        "ask-me-anything-about-everything-today",  # no boundary before sk-
        "passing = true",
        "Bearer of bad news",
        "AKIA is not a key",
        "eyJ alone",
    ],
)
def test_not_a_secret(text: str) -> None:
    assert only("secret").mask(text) == text


# --- all together, values, keys --------------------------------------------------------


def test_everything_in_one_text() -> None:
    text = (
        "User bob@example.com (+44 20 7946 0958) paid with 4111 1111 1111 1111 from "
        "192.168.0.7 to DE89 3704 0044 0532 0130 00 using sk-proj-abcdefghijklmnopqrstuvwx; "
        "logged 2024-01-15T10:30:00Z, v1.2.3, 512 tokens."
    )
    assert M.mask(text) == (
        "User [EMAIL] ([PHONE]) paid with [CARD] from [IP] to [IBAN] using [SECRET]; "
        "logged 2024-01-15T10:30:00Z, v1.2.3, 512 tokens."
    )


def test_a_secret_wins_over_what_it_contains() -> None:
    assert M.mask("password=bob@example.com") == "password=[SECRET]"
    assert M.mask("token: 4111111111111111") == "token: [SECRET]"


def test_detectors_are_independent() -> None:
    text = "bob@example.com 10.0.0.1"
    assert Masker(detectors=["ip"]).mask(text) == "bob@example.com [IP]"
    assert Masker(detectors=["email"]).mask(text) == "[EMAIL] 10.0.0.1"


def test_mask_value_nested() -> None:
    value = {
        "messages": [{"role": "user", "content": "I am bob@example.com"}],
        "meta": ("10.0.0.1", 3, None, True, 2.5),
        "bob@example.com": "key named by an address",
        7: "4111 1111 1111 1111",
    }
    assert M.mask_value(value) == {
        "messages": [{"role": "user", "content": "I am [EMAIL]"}],
        "meta": ("[IP]", 3, None, True, 2.5),
        "[EMAIL]": "key named by an address",
        7: "[CARD]",
    }


def test_secret_named_keys_are_replaced_whole() -> None:
    value = {
        "password": "correct horse",
        "api_key": 12345,
        "Authorization": "Basic abc",
        "http.request.header.authorization": ["Bearer x"],
        "client_secret": {"nested": "dict"},
        "access_token": None,
        "refresh_token": "",
        "token": True,
        "max_tokens": 256,
        "gen_ai.usage.input_tokens": 12,
        "token_count": 3,
        "author": "Ada",
    }
    assert M.mask_value(value) == {
        "password": "[SECRET]",
        "api_key": "[SECRET]",
        "Authorization": "[SECRET]",
        "http.request.header.authorization": "[SECRET]",
        "client_secret": "[SECRET]",
        "access_token": None,
        "refresh_token": "",
        "token": True,
        "max_tokens": 256,
        "gen_ai.usage.input_tokens": 12,
        "token_count": 3,
        "author": "Ada",
    }
    # without the secret detector, the key does not decide
    assert Masker(detectors=["email"]).mask_value({"password": "x"}) == {"password": "x"}


def test_repeated_keys_mask_the_same_and_pii_keys_are_not_remembered() -> None:
    m = Masker()
    value = {"gen_ai.system": "openai", "bob@example.com": 1, "api_key": "k"}
    for _ in range(3):
        assert m.mask_value(value) == {
            "gen_ai.system": "openai",
            "[EMAIL]": 1,
            "api_key": "[SECRET]",
        }
    assert "bob@example.com" not in m._keys and "gen_ai.system" in m._keys


@pytest.mark.parametrize(
    ("key", "named"),
    [
        ("password", True),
        ("PASSWORD", True),
        ("x-api-key", True),
        ("apiKey", True),
        ("set-cookie", True),
        ("session_id", True),
        ("credentials", True),
        ("max_tokens", False),
        ("token_count", False),
        ("keyword", False),
        ("secretary", False),
    ],
)
def test_secret_key(key: str, named: bool) -> None:
    assert secret_key(key) is named


def test_none_masker_is_falsy_and_returns_its_input() -> None:
    none = Masker.none()
    assert not none
    assert Masker(detectors=[]) == none
    text = "bob@example.com 4111111111111111"
    assert none.mask(text) == text
    value = {"password": "x", "l": [text]}
    assert none.mask_value(value) is value
    assert M and Masker(detectors=[], custom=["ACME"])


def test_masker_is_immutable_and_comparable() -> None:
    m = Masker(detectors=["email", "ip"], custom=["ACME-[0-9]+"])
    with pytest.raises(AttributeError):
        m._email = False  # type: ignore[misc]  # the point: it refuses
    assert m == Masker(detectors=["ip", "email"], custom=["ACME-[0-9]+"])
    assert hash(m) == hash(Masker(detectors=["ip", "email"], custom=["ACME-[0-9]+"]))
    assert m.detectors == ("email", "ip")
    assert m.custom == ("ACME-[0-9]+",)
    assert Masker().detectors == DETECTORS


def test_unknown_detector_is_refused() -> None:
    with pytest.raises(InvalidInput, match="unknown 'ssn'") as e:
        Masker(detectors=["email", "ssn"])
    assert e.value.param == "detectors"


# --- custom patterns --------------------------------------------------------------------


def test_custom_patterns() -> None:
    m = Masker(detectors=[], custom=[r"ACME-\d{6}", r"(?i)project\s+falcon"])
    assert m.mask("ticket ACME-123456 for Project  Falcon") == "ticket [MASKED] for [MASKED]"
    assert m.mask("ACME-12") == "ACME-12"


def test_custom_runs_after_builtins() -> None:
    m = Masker(custom=[r"emp-\d+"])
    assert m.mask("emp-42 is bob@example.com") == "[MASKED] is [EMAIL]"


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("(", "custom_patterns[1]: '(' is not a valid pattern"),
        (r"(a)\1", "no backreferences"),
        ("(?<=a)b", "not a valid pattern"),
        ("a*", "matches the empty string"),
        (r"\b", "matches the empty string"),
        ("^", "matches the empty string"),
        ("", "non-empty"),
        ("x" * (MAX_PATTERN_CHARS + 1), f"longer than {MAX_PATTERN_CHARS}"),
        ("a{1000}{1000}", "not a valid pattern"),
    ],
)
def test_invalid_custom_pattern_is_refused_naming_it(pattern: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace("[", r"\[")) as e:
        Masker(custom=["fine", pattern])
    assert e.value.param == "custom_patterns[1]"


def test_lone_surrogates() -> None:
    """JSON can carry a lone surrogate ("\\ud800"); RE2 reads UTF-8."""
    with pytest.raises(InvalidInput, match="not valid Unicode"):
        Masker(custom=["a\ud800"])
    m = Masker(custom=["ACME-[0-9]+"])
    assert m.mask("\ud800 ACME-1 bob@example.com") == "? [MASKED] [EMAIL]"
    assert Masker().mask("\udfff bob@example.com") == "\udfff [EMAIL]"


def test_too_many_custom_patterns() -> None:
    with pytest.raises(InvalidInput, match=f"at most {MAX_CUSTOM}"):
        validate_custom([f"p{i}" for i in range(MAX_CUSTOM + 1)])


def test_catastrophic_backtracking_pattern_finishes() -> None:
    """`(a+)+$` takes exponential time on a backtracking engine for 'aaa...b'; RE2
    matches in linear time, so this returns (a backtracking engine would not)."""
    text = "a" * 50_000 + "b"
    assert Masker(detectors=[], custom=[r"(a+)+$"]).mask(text) == text
    assert Masker(detectors=[], custom=[r"(a+)+$"]).mask("caaa") == "c[MASKED]"
    assert Masker(detectors=[], custom=[r"(x|x)*y"]).mask("x" * 50_000) == "x" * 50_000
    assert Masker(custom=[r"(.*a){20}", r"(\w+\s?)+$"]).mask(text + "!") == "[MASKED]b!"


@pytest.mark.parametrize("text", ["xk_live_abc", "ak_test_", "call k_live_ twice k_test_x"])
def test_a_stripe_trigger_without_a_key_does_not_hang(text: str) -> None:
    # the trigger sits one character into the key: the search once found it again forever
    assert M.mask(text) == text


def test_builtins_on_hostile_text_finish() -> None:
    """Long runs that near-miss every built-in pattern (each is possessive or bounded)."""
    for text in (
        "1" * 100_000,
        "1-" * 50_000,
        "+1 " * 30_000,
        "a:" * 50_000,
        "A1" * 50_000,
        "a." * 50_000 + "@",
        "@a." * 30_000,
        "password=" * 20_000,
        "-----BEGIN PRIVATE KEY-----" * 2_000,
    ):
        assert isinstance(M.mask(text), str)


# --- properties -------------------------------------------------------------------------

_local = st.text(string.ascii_lowercase + string.digits + "._+", min_size=1, max_size=20).filter(
    lambda s: s[0] not in "._+" and s[-1] not in "._+"
)
_label = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=12)
emails = st.builds(
    lambda local, labels, tld: f"{local}@{'.'.join(labels)}.{tld}",
    _local,
    st.lists(_label, min_size=1, max_size=3),
    st.text(string.ascii_lowercase, min_size=2, max_size=6),
)


def _card(first: str, rest: str, sep: str) -> str:
    digits = first + rest
    digits += next(c for c in "0123456789" if luhn(digits + c))
    return sep.join(digits[i : i + 4] for i in range(0, len(digits), 4))


cards = st.builds(
    _card,
    st.sampled_from("23456"),
    st.text(string.digits, min_size=11, max_size=17),
    st.sampled_from(["", " ", "-"]),
)
filler = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(filler, emails, cards), max_size=8))
def test_masking_is_idempotent(parts: list[str]) -> None:
    once = M.mask(" ".join(parts))
    assert M.mask(once) == once, (parts, once)


@settings(max_examples=300, deadline=None)
@given(filler, emails, filler, cards, filler)
def test_generated_email_and_card_never_survive(
    a: str, email: str, b: str, card: str, c: str
) -> None:
    out = M.mask(f"{a} {email} {b} {card} {c}")
    assert email not in out
    assert card not in out


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.one_of(filler, emails, cards), max_size=4), max_size=12))
def test_which_names_every_text_mask_would_change(texts: list[list[str]]) -> None:
    """The batch check of ingest: a text holding anything `mask` changes is named,
    wherever it sits among the others (first, last, beside another)."""
    must = {k for k, t in enumerate(texts) if any(M.mask(s) != s for s in t)}
    assert must <= set(M.which(texts))


def test_which_with_custom_patterns_reads_each_string_anchored() -> None:
    masker = Masker(detectors=(), custom=[r"^ACME-\d{3}"])
    texts = [["first", "ACME-123 at the start of the second string"], ["nothing"]]
    assert masker.which(texts) == [0]
    assert masker.changes(texts[0])
    assert masker.mask(texts[0][1]).startswith("[MASKED]")


pii = st.one_of(
    emails,
    cards,
    st.sampled_from(
        [
            "+44 20 7946 0958",
            "(555) 123-4567",
            "555-123-4567",
            "+1 (212) 555 0199",
            "GB82 WEST 1234 5698 7654 32",
            "DE89370400440532013000",
            "192.168.10.1",
            "2001:db8::8a2e:370:7334",
            "fe80::1%eth0",
            "password=hunter2",
            'api_key: "abc123"',
            "Authorization: Bearer abcdefghijklmnop",
            "token = xyz",
            *SECRETS,
        ]
    ),
)
edge = st.text(
    st.sampled_from([*"aZ09_-+.,:;/()@ \t\n\"'=é€", "\u212a"]), max_size=3
)  # what may touch a value on either side


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(edge, pii, edge), min_size=1, max_size=4), edge)
def test_the_fast_check_finds_pii_whatever_touches_it(
    parts: list[tuple[str, str, str]], tail: str
) -> None:
    """Whatever characters sit against a value (a letter, a digit, punctuation, the
    start or end of a string), if `mask` changes it the fast check names it (the
    autouse fixture asserts that on every `mask` call)."""
    for before, value, after in parts:
        M.mask(before + value + after + tail)
        M.mask(value + after)
        M.mask(before + value)
