"""PII and secret masking, applied to span inputs, outputs and attributes before they
are stored, logged or shown.

A `Masker` is built once per workspace configuration and then only called: it is
immutable, safe to share between threads, and cheap on the ingest hot path.

    masker = Masker(detectors={"email", "secret"}, custom=[r"ACME-\\d{6}"])
    masker.mask("mail bob@example.com, key sk-proj-...")  # 'mail [EMAIL], key [SECRET]'
    masker.mask_value({"password": "hunter2", "q": ["call +44 20 7946 0958"]})

Detectors (`DETECTORS`) and their replacements:

    email        [EMAIL]   local@domain.tld
    phone        [PHONE]   +CC forms and common national groupings, 9-15 digits
    credit_card  [CARD]    13-19 digits, optional spaces or dashes, Luhn-checked
    iban         [IBAN]    ISO 13616, mod-97 checked
    ip           [IP]      IPv4 and IPv6 addresses
    secret       [SECRET]  provider API keys (OpenAI, Anthropic, AWS, GitHub, Slack,
                           Google, Stripe, Hugging Face), JWTs, `Bearer <token>`, PEM private
                           keys, Shipyard
                           keys, `password=...` / `secret: ...` assignments; and the
                           whole value of a mapping key that names a secret
    custom       [MASKED]  a workspace's own regular expressions

Detected spans are found on the original text and replaced in one pass (overlapping
ones are merged under the replacement of the earliest). Masking is idempotent: no replacement
is detected again.

Speed (the ingest hot path; measured on a loaded 2-core machine): about 4 us for 1 KB
of clean prose, 20-45 us for 1 KB of JSON or prose with numbers and dates, 70-110 us for
1 KB dense with PII, 1-2 us for a short attribute value, ~25 us for a 12-attribute
GenAI dict (mapping keys repeat: a key that needs no masking is remembered). Each
custom pattern set adds ~5-10 us per KB (RE2). How: no detector scans the
text unless a cheap test passes first (`'@' in text` for e-mail; a digit for the
numbers, which share one scan whose first character class lets `re` skip in C; a
case-sensitive literal for each vendor key; a keyword near a `:` or `=` for
assignments). Validators (Luhn, mod-97, digit counts, `ipaddress`) run only on
candidates, and built-in patterns use possessive quantifiers so no candidate
backtracks. Custom patterns are hostile input (an administrator types them): they are
checked at configuration time (`validate_custom`: count, size, syntax, no empty match)
and run on RE2, which matches in linear time whatever the pattern.
"""

from __future__ import annotations

import bisect
import ipaddress
import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import re2

from shipyard.errors import InvalidInput

DETECTORS: Final = ("email", "phone", "credit_card", "iban", "ip", "secret")
TOKENS: Final = {
    "email": "[EMAIL]",
    "phone": "[PHONE]",
    "credit_card": "[CARD]",
    "iban": "[IBAN]",
    "ip": "[IP]",
    "secret": "[SECRET]",
    "custom": "[MASKED]",
}
SECRET = TOKENS["secret"]
MAX_CUSTOM = 20  # patterns a workspace may configure
MAX_PATTERN_CHARS = 500  # characters a pattern may have
_RE2_MAX_MEM = 8 << 20  # bytes RE2 may use to compile one pattern (a bigger one is refused)

# --- secrets: each pattern starts with a trigger, found with str.find -----------------

_ASSIGN = re.compile(
    # key = value, key: "value", "key": 'value'; the key, separator, scheme and quotes
    # are kept. The match starts at the keyword (a prefix such as `db_` stays as it is).
    r"(?i:(?P<akey>pass(?:word|wd|phrase)|pwd|secret(?:[_-]?key)?|api[_-]?key"
    r"|access[_-]?key|private[_-]?key|token|credentials?|authorization)"
    r"(?![A-Za-z0-9])(?P<asep>[\"']?[ \t]*[:=][ \t]*)"
    r"(?P<ascheme>(?:basic|bearer|token|digest)[ \t]+)?+)"
    r"(?!\[SECRET\])"
    r"(?P<aval>\"[^\"\n]{1,4000}+\"|'[^'\n]{1,4000}+'|[^\s,;&'\"}\])<>]{1,4000}+)"
)
_BEARER = re.compile(
    r"(?<![\w-])(?i:(?P<bscheme>bearer)[ \t]+)(?!\[SECRET\])[A-Za-z0-9._~+/=-]{8,}+"
)
_KEYS = {
    "pem": re.compile(
        r"-----BEGIN[A-Z0-9 ]{0,40} PRIVATE KEY-----"
        r"(?:.*?-----END[A-Z0-9 ]{0,40} PRIVATE KEY-----|.*\Z)",  # a truncated key too
        re.DOTALL,
    ),
    "openai_anthropic": re.compile(
        r"(?<![\w-])sk-(?:ant-|proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}+"
    ),
    "aws": re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}(?![A-Za-z0-9])"),
    "github": re.compile(r"(?<!\w)(?:gh[pousr]_[A-Za-z0-9]{30,}+|github_pat_[A-Za-z0-9_]{22,}+)"),
    "slack": re.compile(r"(?<![\w-])xox[abprs]-[A-Za-z0-9-]{10,}+"),
    "google": re.compile(r"(?<![\w-])AIza[0-9A-Za-z_-]{35,}+"),
    "jwt": re.compile(r"(?<![\w-])eyJ[A-Za-z0-9_-]{5,}+\.[A-Za-z0-9_-]{5,}+\.[A-Za-z0-9_-]*+"),
    "stripe": re.compile(r"(?<![\w-])[sr]k_(?:live|test)_[A-Za-z0-9]{16,}+"),
    "huggingface": re.compile(r"(?<![\w-])hf_[A-Za-z0-9]{30,}+"),
    "shipyard": re.compile(r"(?<![\w-])sy-[0-9a-f]{12}-[A-Za-z0-9_-]{20,}+"),
}
# where a key can start: literal triggers (case-sensitive, as the vendors print them),
# each looked for only when a cheap one-character test passes
_DASHED = (
    ("sk-", "openai_anthropic"),
    ("sy-", "shipyard"),
    ("xox", "slack"),
    ("-----BEGIN", "pem"),
)
# (trigger, key, where the key starts before the trigger)
_UNDERSCORED = (("k_live_", "stripe", 1), ("k_test_", "stripe", 1), ("hf_", "huggingface", 0))
_GITHUB = re.compile(r"g(?:h[pousr]_|ithub_pat_)")
_AWS_GOOGLE = re.compile(r"A(?:KIA|SIA|BIA|CCA|Iza)")
# case-insensitive keywords of `key = value` assignments (looked for in lower case)
_KEYWORDS = (
    "pass",
    "pwd",
    "secret",
    "api",
    "access",
    "private",
    "token",
    "credential",
    "authorization",
)

Span = tuple[int, int, str]  # start, end, replacement


def _secret_replacement(m: re.Match[str]) -> str:
    if m.re is _ASSIGN:
        value = m.group("aval")
        quote = value[0] if value[0] in "\"'" else ""
        scheme = m.group("ascheme") or ""
        return f"{m.group('akey')}{m.group('asep')}{scheme}{quote}{SECRET}{quote}"
    if m.re is _BEARER:
        return f"{m.group('bscheme')} {SECRET}"
    return SECRET


def _try(pattern: re.Pattern[str], text: str, start: int, out: list[Span]) -> int:
    """Match `pattern` at `start`; record a span; return where to look on from."""
    m = pattern.match(text, start)
    if m is None:
        return start + 1
    out.append((start, m.end(), _secret_replacement(m)))
    return m.end()


def _secret_spans(text: str, out: list[Span]) -> None:
    if "-" in text:
        for trigger, name in _DASHED:
            i = text.find(trigger)
            while i >= 0:
                i = text.find(trigger, _try(_KEYS[name], text, i, out))
    if "_" in text:
        found = _GITHUB.search(text)
        while found is not None:
            found = _GITHUB.search(text, _try(_KEYS["github"], text, found.start(), out))
        for trigger, name, back in _UNDERSCORED:
            i = text.find(trigger)
            while i >= 0:
                start = i - back
                # on past this trigger whatever the key's match (it starts before it)
                after = _try(_KEYS[name], text, start, out) if start >= 0 else 0
                i = text.find(trigger, max(i + 1, after))
    if "A" in text:
        found = _AWS_GOOGLE.search(text)
        while found is not None:
            key = _KEYS["google"] if found.group() == "AIza" else _KEYS["aws"]
            found = _AWS_GOOGLE.search(text, _try(key, text, found.start(), out))
    if "eyJ" in text:
        i = text.find("eyJ")
        while i >= 0:
            i = text.find("eyJ", _try(_KEYS["jwt"], text, i, out))
    bearer = " " in text or "\t" in text
    assignment = ":" in text or "=" in text
    if not (bearer or assignment):
        return
    lowered = text.lower()
    if len(lowered) != len(text):  # a few characters lower-case to two ('İ')
        lowered = "".join(c if len(c.lower()) != 1 else c.lower() for c in text)
    if bearer:
        i = lowered.find("bearer")
        while i >= 0:
            i = lowered.find("bearer", _try(_BEARER, text, i, out))
    if assignment:
        for keyword in _KEYWORDS:
            i = lowered.find(keyword)
            while i >= 0:
                near = lowered[i : i + 32]  # the separator follows the keyword closely
                i = _try(_ASSIGN, text, i, out) if ":" in near or "=" in near else i + 1
                i = lowered.find(keyword, i)


# --- e-mail: found from each '@' --------------------------------------------------------

_LOCAL_REVERSED = re.compile(r"[\w.%+-]{1,64}+")  # matched on the text before "@", reversed
_DOMAIN = re.compile(r"@(?:[^\W_][\w-]{0,62}+\.)+[^\W\d_]{2,63}+(?![\w-])")


def _email_spans(text: str, out: list[Span]) -> None:
    at = text.find("@")
    while at >= 0:
        domain = _DOMAIN.match(text, at)
        # the local part, read backwards from the "@" (at most 64 characters are masked)
        local = _LOCAL_REVERSED.match(text[max(0, at - 64) : at][::-1]) if domain else None
        if domain is not None and local is not None:
            out.append((at - local.end(), domain.end(), TOKENS["email"]))
            at = text.find("@", domain.end())
        else:
            at = text.find("@", at + 1)


# --- numbers: IBAN, card, IPv4, phone (one scan), IPv6 (from each ':') -----------------


def _after_lead(lead: str, before: str, rest: str) -> str:
    """A branch of `_NUMERIC`, which consumes its first character with one shared class
    (so the scan skips every other character in C): the lead must be in `lead`, the
    character before it not in `before`, and `rest` follows."""
    return f"(?<={lead})(?<!{before}.){rest}"


_BRANCHES = {
    # IBAN: country, check digits, then groups of 4 (spaced or not), mod-97 checked
    "iban": _after_lead(
        "[A-Z]",
        "[A-Za-z0-9]",
        r"[A-Z][0-9]{2}(?:[ ]?[A-Z0-9]{4}){2,7}+(?:[ ]?[A-Z0-9]{1,3})?+(?![A-Za-z0-9])",
    ),
    # cards: 13-19 digits, the first 2-6 (Visa, Mastercard, Amex, Discover, JCB, ...)
    "card": _after_lead("[2-6]", "[0-9+.,-]", r"[0-9](?:[ -]?[0-9]){11,30}+"),
    # IPv4 (octets checked in Python)
    "ip4": _after_lead("[0-9]", r"[\w.]", r"[0-9]{0,2}+(?:\.[0-9]{1,3}+){3}(?!\w|\.[0-9])"),
    # phones: +CC..., (area) groups, digit groups with one kind of separator; a ':' or
    # '/' may come before a '+' (tel:+1..., wa.me/+44...)
    "phone": "(?:"
    + _after_lead(r"\+", r"[\w+.-]", r"[0-9]++(?:[ .-]?\([0-9]++\))?+(?:[ .-]?[0-9]++){0,8}+")
    + "|"
    + _after_lead(r"\(", r"[\w+.:/-]", r"[0-9]++\)[ .-]?[0-9]++(?:[ .-][0-9]++){0,6}+")
    + "|"
    + _after_lead(
        "[0-9]", r"[\w+./-]", r"[0-9]{1,4}+(?P<sep>[ .-])[0-9]++(?:(?P=sep)[0-9]++){1,6}+"
    )
    + ")",  # where it may end is decided in Python (`_phone_end`)
}
_LEAD = "[0-9A-Z+(]"
_NUMERIC = re.compile(_LEAD + "(?:" + "|".join(f"(?P<{k}>{v})" for k, v in _BRANCHES.items()) + ")")
# each kind alone, and the kinds after it: one rejected at a start (a 12-digit run that
# fails Luhn) leaves the later ones to try there
_ALONE = {k: re.compile(f"{_LEAD}(?P<{k}>{v})") for k, v in _BRANCHES.items()}
_LATER = {k: tuple(_BRANCHES)[i + 1 :] for i, k in enumerate(_BRANCHES)}
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = _OCTET + r"(?:\." + _OCTET + r"){3}"
_IP6_COLON = re.compile(r":(?=[0-9A-Fa-f:])")
_IP6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}+(?:" + _IPV4 + r"|[0-9A-Fa-f]{1,4})?+"
    r"(?:%[A-Za-z0-9_.]{1,32}+)?+(?![\w:]|\.[0-9])"
)
_HEX = frozenset("0123456789abcdefABCDEF")
_DIGITS = "0123456789"
_IBAN_GROUP = re.compile(r"[ ]?[A-Z0-9]+")
_GROUPS = re.compile(r"[0-9]+")
_PHONE_AFTER = re.compile(r"\w|[.:/-][0-9]")  # what may not follow a phone number
_SEPARATOR = re.compile(r"[ -]")
_DATE_LIKE = re.compile(r"(?:19|20)[0-9]{2}[ ./-](?:0?[1-9]|1[0-2])(?:[ ./-]|$)")


def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    """ISO 13616: 15-34 characters, country letters, mod 97 of the rearranged number is 1."""
    if not 15 <= len(iban) <= 34 or not iban[:2].isalpha() or not iban[2:4].isdigit():
        return False
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _iban_end(found: str) -> int:
    """The end of the longest prefix (at group boundaries) that is a valid IBAN, or 0."""
    ends = [m.end() for m in _IBAN_GROUP.finditer(found, 4)]
    for end in reversed(ends):
        if iban_ok(found[:end].replace(" ", "")):
            return end
    return 0


def _phone(found: str) -> bool:
    digits = sum(c.isdigit() for c in found)
    if not 9 <= digits <= 15 or _DATE_LIKE.match(found) is not None:
        return False
    if found[0] in "+(":
        return True
    groups = _GROUPS.findall(found)
    if any(len(g) < 2 for g in groups[1:]):  # 10.0.19041.1: a version
        return False
    # 123 456 789, 1.234.567.890: a number written with thousands separators
    return not (len(groups[0]) <= 3 and all(len(g) == 3 for g in groups[1:]))


def _phone_end(found: str, text: str, start: int) -> int:
    """The end of the longest prefix (whole digit groups) that is a phone number and is
    not followed by a letter or more of a number, or 0: a run of groups too long for one
    number may start with one."""
    groups = list(_GROUPS.finditer(found))
    fewest = 1 if found[0] in "+(" else 3  # 555 1234 is not one: the pattern's rule
    for n in range(len(groups), fewest - 1, -1):
        end = groups[n - 1].end()
        if _PHONE_AFTER.match(text, start + end) is None and _phone(found[:end]):
            return end
    return 0


def _card_end(found: str, after: str) -> int:
    """The end of the longest prefix (at a separator, or the whole unless more of the
    number follows: `after`) that is a card number passing Luhn, or 0: '4111 1111 1111
    1111 5' is a card and a 5."""
    ends = [m.start() for m in _SEPARATOR.finditer(found)]
    if not (after[:1].isdigit() or (after[:1] in (".", ",") and after[1:2].isdigit())):
        ends.append(len(found))
    for end in reversed(ends):
        digits = found[:end].replace(" ", "").replace("-", "")
        if 13 <= len(digits) <= 19 and luhn(digits):
            return end
    return 0


def _has_digit(text: str) -> bool:
    # ten memchr scans: faster than a regex on long text, and than any() on short text
    return (
        "0" in text
        or "1" in text
        or "2" in text
        or "3" in text
        or "4" in text
        or "5" in text
        or "6" in text
        or "7" in text
        or "8" in text
        or "9" in text
    )


def _numeric_spans(text: str, enabled: frozenset[str], out: list[Span]) -> None:
    if len(text) < 256:
        lo, hi = 0, len(text)
    else:
        # the scan covers the digits only: an IBAN starts 2 letters before its first
        # digit and may end with up to 30 letters; the lookaheads read 2 characters on
        lo = max(0, min(i for i in map(text.find, _DIGITS) if i >= 0) - 2)
        hi = max(map(text.rfind, _DIGITS)) + 32
    m = _NUMERIC.search(text, lo, hi)
    while m is not None:
        start, kind = m.start(), m.lastgroup or ""
        found = _judge(m, text, enabled)
        for later in _LATER[kind] if found is None else ():
            other = _ALONE[later].match(text, start, hi)
            if other is not None and (found := _judge(other, text, enabled)) is not None:
                break
        if found is not None:
            out.append((start, found[0], found[1]))
            m = _NUMERIC.search(text, found[0], hi)
        else:  # what it holds may still start one ('20 4111 1111 1111 1111', '12 555-123-4567')
            m = _NUMERIC.search(text, start + 1, hi)


def _judge(m: re.Match[str], text: str, enabled: frozenset[str]) -> tuple[int, str] | None:
    """(end, replacement) for a candidate that is what it looks like, else None."""
    kind, start, end = m.lastgroup, m.start(), m.end()
    if kind == "iban":
        if "iban" in enabled and (valid := _iban_end(m.group())):
            return start + valid, TOKENS["iban"]
    elif kind == "card":
        if "credit_card" in enabled and (valid := _card_end(m.group(), text[end : end + 2])):
            return start + valid, TOKENS["credit_card"]  # the rest is scanned again
    elif kind == "ip4":
        octets = m.group().split(".")
        if "ip" in enabled and all(int(o) <= 255 and (o == "0" or o[0] != "0") for o in octets):
            return end, TOKENS["ip"]
    elif "phone" in enabled and (valid := _phone_end(m.group(), text, start)):
        return start + valid, TOKENS["phone"]
    return None


def _ip6_spans(text: str, out: list[Span]) -> None:
    colon = _IP6_COLON.search(text)
    while colon is not None:
        start = colon.start()
        while start > 0 and colon.start() - start < 4 and text[start - 1] in _HEX:
            start -= 1
        m = _IP6.match(text, start)
        if m is not None and _ip6(m.group()):
            out.append((start, m.end(), TOKENS["ip"]))
            colon = _IP6_COLON.search(text, m.end())
        else:
            colon = _IP6_COLON.search(text, (m.end() if m else colon.start()) + 1)


def _ip6(found: str) -> bool:
    if not any(c.isdigit() for c in found):  # a::b, dead::beef: code, not addresses
        return False
    try:
        ipaddress.IPv6Address(found.partition("%")[0])
    except ValueError:
        return False
    return True


def _assemble(text: str, spans: list[Span]) -> str:
    """Replace the spans. Overlapping ones are merged: the replacement of the earliest
    (then longest) stands for all of them, so nothing of either is left."""
    spans.sort(key=lambda s: (s[0], -s[1]))
    parts: list[str] = []
    done = 0
    for start, end, replacement in spans:
        if start < done:
            done = max(done, end)
            continue
        parts.append(text[done:start])
        parts.append(replacement)
        done = end
    parts.append(text[done:])
    return "".join(parts)


# --- keys that name a secret (mask_value) ----------------------------------------------

_SECRET_KEY = re.compile(
    r"(?:^|[_-])(?:passwd|password|passphrase|pwd|secret|api[_-]?key|apikey|access[_-]?key"
    r"|private[_-]?key|token|auth|authorization|cookie|set-cookie|credentials?"
    r"|session[_-]?id|signature)$"
)


def secret_key(key: str) -> bool:
    """True for a mapping key such as `password`, `api_key`, `http.request.header.
    authorization`, `access_token`; false for `max_tokens`, `token_count`."""
    return _SECRET_KEY.search(key.rpartition(".")[2].lower()) is not None


# --- custom patterns -------------------------------------------------------------------


# strings on which a pattern that can match the empty string shows it (`\\b`, `^`, `x?`)
_EMPTY_PROBES = ("", "a b", "0 1\n", "A-Z._")


def _re2_options(max_mem: int = _RE2_MAX_MEM) -> Any:
    options = re2.Options()
    options.max_mem = max_mem
    options.log_errors = False
    return options


def check_pattern(pattern: str) -> str:
    """One custom pattern, checked: returns it, or raises ValueError saying what is wrong
    with it (the message quotes the pattern, shortened)."""
    if not isinstance(pattern, str) or not pattern:
        raise ValueError("a pattern must be a non-empty string")
    shown = pattern if len(pattern) <= 60 else pattern[:57] + "..."
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ValueError(f"{shown!r} is longer than {MAX_PATTERN_CHARS} characters")
    try:
        compiled = re2.compile(pattern, _re2_options())
    except UnicodeEncodeError:
        raise ValueError(f"{shown!r} is not valid Unicode (a lone surrogate)") from None
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise ValueError(
            f"{shown!r} is not a valid pattern ({reason}); patterns use RE2 syntax "
            "(no backreferences or lookaround)"
        ) from None
    if any(m.group() == "" for probe in _EMPTY_PROBES for m in compiled.finditer(probe)):
        raise ValueError(f"{shown!r} matches the empty string")
    return pattern


def validate_custom(patterns: Sequence[str], *, field: str = "custom_patterns") -> list[str]:
    """Check a workspace's patterns; raise InvalidInput naming the bad one."""
    if len(patterns) > MAX_CUSTOM:
        raise InvalidInput(f"{field}: at most {MAX_CUSTOM} patterns", param=field)
    for i, pattern in enumerate(patterns):
        try:
            check_pattern(pattern)
        except ValueError as exc:
            raise InvalidInput(f"{field}[{i}]: {exc}", param=f"{field}[{i}]") from None
    return list(patterns)


# --- the masker ------------------------------------------------------------------------

_NUMERIC_DETECTORS = frozenset({"phone", "credit_card", "iban", "ip"})

# What each detector may find, widened (lookarounds dropped, counts lowered, any "@"):
# whatever a detector finds, this finds too, in linear time on RE2. Text it finds nothing
# in needs no masking; where it finds something the detectors themselves look.
_PREFILTERS = {
    "email": "@",
    # a phone's first digit follows a "+", a "(" or no word character; its last digit
    # ends a run of digits that no word character follows
    "phone": r"(?:^|[^A-Za-z0-9_./-])[0-9](?:[ .()-]{0,2}[0-9]){8,}(?:[^A-Za-z0-9_]|$)",
    "credit_card": r"(?:^|[^0-9+.,-])[2-6](?:[ -]?[0-9]){12}",
    "iban": r"(?:^|[^A-Za-z0-9])[A-Z]{2}[0-9]{2}",
    "ip": r"(?:^|[^A-Za-z0-9_.])[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]"
    r"|[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:",
    "secret": "|".join(
        (
            "-----BEGIN",
            r"sk-[A-Za-z0-9_-]{20}",
            r"(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}",
            r"gh[pousr]_[A-Za-z0-9]{30}",
            "github_pat_",
            r"xox[abprs]-",
            "AIza",
            r"eyJ[A-Za-z0-9_-]{5}",
            r"[sr]k_(?:live|test)_",
            r"hf_[A-Za-z0-9]{30}",
            r"sy-[0-9a-f]{12}-",
            r"(?i:bearer)[ \t]",
            r"(?i:pass(?:word|wd|phrase)|pwd|secret(?:[_-]?key)?|api[_-]?key|access[_-]?key"
            r"|private[_-]?key|token|credentials?|authorization)[\"']?[ \t]*[:=]",
        )
    ),
}
_PREFILTER_CACHE: dict[frozenset[str], Any] = {}


def _prefilter(detectors: frozenset[str]) -> Any:
    found = _PREFILTER_CACHE.get(detectors)
    if found is None and detectors:
        pattern = "|".join(f"(?:{_PREFILTERS[d]})" for d in DETECTORS if d in detectors)
        found = _PREFILTER_CACHE[detectors] = re2.compile(pattern.encode(), _re2_options())
    return found


class Masker:
    """Masks the enabled detectors and custom patterns; immutable once built."""

    __slots__ = (
        "_clean_keys",
        "_custom",
        "_detectors",
        "_email",
        "_ip",
        "_keys",
        "_numeric",
        "_patterns",
        "_prefilter",
        "_secrets",
    )
    _detectors: frozenset[str]
    _patterns: tuple[str, ...]
    _secrets: bool
    _email: bool
    _ip: bool
    _numeric: frozenset[str]
    _custom: Any  # a compiled RE2 pattern (re2 has no type hints)
    _prefilter: Any  # RE2: what the enabled detectors may find, widened (None: none on)
    # mapping keys repeat (attribute names): key -> (masked key, names a secret)
    _keys: dict[str, tuple[str, bool]]
    _clean_keys: set[str]  # the keys of `_keys` that are left alone and name no secret

    def __init__(self, detectors: Iterable[str] = DETECTORS, custom: Sequence[str] = ()) -> None:
        if isinstance(detectors, str):
            detectors = (detectors,)
        enabled = frozenset(detectors)
        unknown = enabled - set(DETECTORS)
        if unknown:
            raise InvalidInput(
                f"detectors: unknown {', '.join(sorted(map(repr, unknown)))} "
                f"(known: {', '.join(DETECTORS)})",
                param="detectors",
            )
        patterns = tuple(validate_custom(list(custom)))
        init = object.__setattr__  # the instance is frozen: __setattr__ refuses
        init(self, "_detectors", enabled)
        init(self, "_patterns", patterns)
        init(self, "_secrets", "secret" in enabled)
        init(self, "_email", "email" in enabled)
        init(self, "_ip", "ip" in enabled)
        init(self, "_numeric", enabled & _NUMERIC_DETECTORS)
        init(self, "_prefilter", _prefilter(enabled))
        custom_re = None
        if patterns:
            joined = "|".join(f"(?:{p})" for p in patterns)
            try:
                custom_re = re2.compile(joined, _re2_options(_RE2_MAX_MEM * len(patterns)))
            except re2.error:
                raise InvalidInput(
                    "custom_patterns: the patterns are too large together", param="custom_patterns"
                ) from None
        init(self, "_custom", custom_re)
        init(self, "_keys", {})
        init(self, "_clean_keys", set())

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Masker is immutable (cannot set {name!r})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Masker):
            return NotImplemented
        return (self._detectors, self._patterns) == (other._detectors, other._patterns)

    def __hash__(self) -> int:
        return hash((self._detectors, self._patterns))

    def __repr__(self) -> str:
        return f"Masker(detectors={self.detectors!r}, custom={list(self._patterns)!r})"

    @classmethod
    def none(cls) -> Masker:
        """A masker that masks nothing (falsy; `mask` returns its input)."""
        return cls(detectors=(), custom=())

    @property
    def detectors(self) -> tuple[str, ...]:
        """The enabled detectors, in `DETECTORS` order."""
        return tuple(d for d in DETECTORS if d in self._detectors)

    @property
    def custom(self) -> tuple[str, ...]:
        return self._patterns

    def __bool__(self) -> bool:
        return bool(self._detectors) or self._custom is not None

    def mask(self, text: str) -> str:
        spans = self._found(text)
        if spans:
            text = _assemble(text, spans)
        if self._custom is not None:
            try:
                text = self._custom.sub(_custom_replacement, text)
            except UnicodeEncodeError:  # a lone surrogate (JSON may carry one): RE2 reads UTF-8
                text = text.encode("utf-8", "replace").decode()
                text = self._custom.sub(_custom_replacement, text)
        return text

    def _found(self, text: str) -> list[Span]:
        """What the built-in detectors find in `text`."""
        spans: list[Span] = []
        if self._secrets:
            _secret_spans(text, spans)
        if self._email and "@" in text:
            _email_spans(text, spans)
        if self._numeric and _has_digit(text):
            _numeric_spans(text, self._numeric, spans)
            if self._ip and ":" in text:
                _ip6_spans(text, spans)
        return spans

    def changes(self, strings: Sequence[str]) -> bool:
        """Whether `mask` would change any of `strings` (`which` for one text)."""
        return bool(self.which([strings]))

    def _custom_hit(self, strings: Sequence[str]) -> bool:
        custom = self._custom
        if custom is None:
            return False
        try:
            return any(custom.search(s) is not None for s in strings)
        except UnicodeEncodeError:  # a lone surrogate: let `mask` deal with it
            return True

    def which(self, texts: Sequence[Sequence[str]]) -> list[int]:
        """The indexes of the texts (each a sequence of strings) in which `mask` may
        change a string, ascending. A text's strings are joined by blank lines, and the
        texts too: every match inside one string is found in the joined text as well (each
        detector reads a line break as it reads a string's end), and a match the joining
        makes is only a false alarm. The widened patterns run once over all of it, on RE2
        in linear time (as UTF-8 bytes: RE2's own), and the Python detectors read only a
        text where they find something; the search goes on from the next text. Custom
        patterns are searched string by string (a `^` or `\\A` anchors at the start of
        each string, as `mask` reads it)."""
        found: list[int] = []
        if self._prefilter is not None:
            joined = ["\n\n".join(t) for t in texts]
            encoded: list[bytes] = []
            for k, j in enumerate(joined):
                try:
                    encoded.append(j.encode())
                except UnicodeEncodeError:  # a lone surrogate: the detectors read it
                    encoded.append(b"")
                    if self._found(j):
                        found.append(k)
            starts = list(itertools.accumulate((len(e) + 2 for e in encoded[:-1]), initial=0))
            text = b"\n\n".join(encoded)
            m = self._prefilter.search(text)
            while m is not None:
                # the text its last character is in (a match may begin on the blank
                # line before a text: the character a number must not follow)
                k = bisect.bisect_right(starts, m.end() - 1) - 1
                if self._found(joined[k]):
                    found.append(k)
                if k + 1 == len(starts):
                    break
                m = self._prefilter.search(text, starts[k + 1] - 2)
        if self._custom is not None:
            seen = set(found)
            found += [k for k, t in enumerate(texts) if k not in seen and self._custom_hit(t)]
        return sorted(set(found))

    def clean_key(self, key: str) -> bool:
        """Whether a mapping key is left as it is and does not name a secret (so
        `mask_value` keeps the key and masks only its value); remembered per key."""
        if key in self._clean_keys:
            return True
        masked, secret = self._key(key)
        clean = not secret and masked == key
        if clean and key in self._keys:  # remembered (bounded as `_keys` is)
            if len(self._clean_keys) >= _KEY_CACHE:
                self._clean_keys.clear()
            self._clean_keys.add(key)
        return clean

    @property
    def clean_keys(self) -> set[str]:
        """Keys `clean_key` found clean so far (read it; do not change it): a whole
        mapping's keys are checked against it at once."""
        return self._clean_keys

    def mask_value(self, value: Any) -> Any:
        """Mask strings anywhere in a JSON-like value: lists, tuples, mappings (keys
        too). With the secret detector on, a mapping value whose key names a secret is
        replaced whole."""
        if not self:
            return value
        return self._value(value)

    def _value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, Mapping):
            out: dict[Any, Any] = {}
            for k, v in value.items():
                if isinstance(k, str):
                    masked, secret = self._key(k)
                    out[masked] = SECRET if secret and _maskable(v) else self._value(v)
                else:
                    out[k] = self._value(v)
            return out
        if isinstance(value, list):
            return [self._value(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self._value(v) for v in value)
        return value

    def _key(self, key: str) -> tuple[str, bool]:
        known = self._keys.get(key)
        if known is None:
            known = (self.mask(key), self._secrets and secret_key(key))
            if len(key) <= 200 and known[0] == key:  # no PII kept in memory
                if len(self._keys) >= _KEY_CACHE:
                    self._keys.clear()  # a bound on memory, not an LRU: keys repeat
                self._keys[key] = known
        return known


_KEY_CACHE = 4096


def _custom_replacement(m: Any) -> str:
    return TOKENS["custom"] if m.group() else ""


def _maskable(value: Any) -> bool:
    """A secret-named key's value is replaced unless it carries nothing (None, a bool,
    an empty string)."""
    return value is not None and not isinstance(value, bool) and value != ""
