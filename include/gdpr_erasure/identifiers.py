"""The identifiers a person asks us to forget, validated and normalised.

A :class:`SubjectIdentifiers` never shows its values in ``repr`` or ``str``: it travels through
code that logs, and an email in a log line is the very leak this product exists to prevent.

One person, one spelling (docs/intake.md, "Identifier rules"):

* An email address is Unicode-normalised to NFC, so a precomposed ``é`` and ``e`` + combining
  acute are one address; the comparison form (:attr:`SubjectIdentifiers.email`, what is compared
  and hashed) is that, lower-cased; :attr:`SubjectIdentifiers.email_as_given` keeps the caller's
  case, NFC too, for Stripe's exact lookup.
* No identifier may contain a character nobody can see or check: control (Cc) and format (Cf:
  zero-width space and joiners, bidi controls, BOM, soft hyphen...) characters, spaces other than
  U+0020 (no-break space...), line and paragraph separators, other invisible characters
  (Unicode's default-ignorable code points, Hangul fillers, the blank Braille pattern),
  private-use and unassigned code points, lone surrogates. They are refused, never stripped: a
  value that differs from what the person wrote must not become "the" identifier without a
  human noticing.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from dataclasses import dataclass, field, fields

# Deliberately simple: one @, no spaces, a dot in the domain. Full RFC 5322 parsing accepts
# addresses that no payment or messaging provider stores, and rejects nothing we need.
_EMAIL_RE = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}")
_E164_RE = re.compile(r"\+[1-9][0-9]{6,14}")  # ASCII digits: \d would take Arabic-Indic ones
_PHONE_SEPARATORS = re.compile(r"[ \-().]")
_STRIPE_CUSTOMER_RE = re.compile(r"cus_[A-Za-z0-9]{6,250}")
_USER_ID_RE = re.compile(r"[\x21-\x7e]{1,255}")

#: Trimmed from both ends of every identifier (a pasted value often ends with a line break).
#: Nothing else is trimmed: a no-break space at the end is refused like one in the middle.
ASCII_WHITESPACE = " \t\n\r\x0b\x0c"

#: Code points refused in every identifier whatever the Unicode version of the running Python:
#: control, format, private use, separators and spaces other than U+0020 (Unicode 15.0), plus the
#: invisible letters and marks below (default-ignorable code points outside Cf, and U+2800).
#: Surrogates are refused too but kept out of this table, which the intake's OpenAPI patterns
#: are built from (a regular expression engine cannot hold them). Unassigned code points (Cn)
#: are refused by category: they cannot be listed for every Unicode version.
REFUSED_RANGES: tuple[tuple[int, int], ...] = (
    (0x0000, 0x001F),  # C0 controls
    (0x007F, 0x00A0),  # DEL, C1 controls, NO-BREAK SPACE
    (0x00AD, 0x00AD),  # SOFT HYPHEN
    (0x034F, 0x034F),  # COMBINING GRAPHEME JOINER
    (0x0600, 0x0605),  # Arabic number signs (format)
    (0x061C, 0x061C),  # ARABIC LETTER MARK
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x115F, 0x1160),  # HANGUL CHOSEONG / JUNGSEONG FILLER
    (0x1680, 0x1680),  # OGHAM SPACE MARK
    (0x17B4, 0x17B5),  # KHMER VOWEL INHERENT AQ / AA
    (0x180B, 0x180F),  # Mongolian variation selectors and vowel separator
    (0x2000, 0x200F),  # spaces, ZERO WIDTH SPACE / NON-JOINER / JOINER, LRM, RLM
    (0x2028, 0x202F),  # LINE / PARAGRAPH SEPARATOR, bidi embeddings and overrides, NARROW NBSP
    (0x205F, 0x2064),  # MEDIUM MATHEMATICAL SPACE, WORD JOINER, invisible operators
    (0x2066, 0x206F),  # bidi isolates, deprecated format characters
    (0x2800, 0x2800),  # BRAILLE PATTERN BLANK
    (0x3000, 0x3000),  # IDEOGRAPHIC SPACE
    (0x3164, 0x3164),  # HANGUL FILLER
    (0xE000, 0xF8FF),  # private use
    (0xFE00, 0xFE0F),  # variation selectors
    (0xFEFF, 0xFEFF),  # ZERO WIDTH NO-BREAK SPACE (BOM)
    (0xFFA0, 0xFFA0),  # HALFWIDTH HANGUL FILLER
    (0xFFF9, 0xFFFB),  # interlinear annotation
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),  # Egyptian hieroglyph format controls (to 1343F in Unicode 15.0)
    (0x1BCA0, 0x1BCA3),  # shorthand format controls
    (0x1D173, 0x1D17A),  # musical symbol format controls
    (0xE0001, 0xE0001),  # LANGUAGE TAG
    (0xE0020, 0xE007F),  # tag characters
    (0xE0100, 0xE01EF),  # variation selectors supplement
    (0xF0000, 0xFFFFD),  # private use
    (0x100000, 0x10FFFD),  # private use
)
_RANGE_STARTS = [start for start, _ in REFUSED_RANGES]

_CATEGORY_REASONS = {
    "Cc": "a control character",
    "Cf": "an invisible format character",
    "Zs": "a space other than the ASCII space",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
    "Cs": "a lone surrogate",
    "Co": "a private-use character",
    "Cn": "an unassigned code point",
}

#: :attr:`InvalidIdentifier.kind` of a refused character (the intake's ``invisible_character``).
INVISIBLE_CHARACTER = "invisible_character"


class InvalidIdentifier(ValueError):
    """An identifier failed validation. The message names the field, never the value.

    ``kind`` is :data:`INVISIBLE_CHARACTER` for a refused character, ``"invalid"`` otherwise.
    """

    def __init__(self, field_name: str, reason: str, kind: str = "invalid") -> None:
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name
        self.reason = reason
        self.kind = kind


def _in_refused_ranges(code_point: int) -> bool:
    index = bisect.bisect_right(_RANGE_STARTS, code_point) - 1
    return index >= 0 and code_point <= REFUSED_RANGES[index][1]


def refused_character(value: str) -> str | None:
    """Describe the first character of ``value`` no identifier may contain, or ``None``.

    The description names the kind and the code point (``an invisible format character (U+200B
    ZERO WIDTH SPACE)``): what was wrong, never the value around it.
    """
    for char in value:
        if "!" <= char <= "~" or char == " ":
            continue
        reason = _CATEGORY_REASONS.get(unicodedata.category(char))
        if reason is None and _in_refused_ranges(ord(char)):
            reason = "an invisible character"
        if reason is not None:
            name = unicodedata.name(char, "")
            return f"{reason} (U+{ord(char):04X}{' ' + name if name else ''})"
    return None


def _clean(field_name: str, value: str) -> str:
    """Trim ASCII whitespace at both ends; refuse invisible and control characters anywhere."""
    trimmed = value.strip(ASCII_WHITESPACE)
    problem = refused_character(trimmed)
    if problem is not None:
        raise InvalidIdentifier(
            field_name,
            f"contains {problem}: remove it (invisible, control and unassigned characters are refused)",
            INVISIBLE_CHARACTER,
        )
    return trimmed


def parse_email(value: str) -> tuple[str, str]:
    """An email address as ``(comparison form, spelling as given)``: both NFC, the first
    lower-cased (see :func:`normalise_email`), the second with the caller's case.

    Raises :class:`InvalidIdentifier` if malformed or if it holds a refused character.
    """
    email = _clean("email", value)
    if len(email) > 254 or not _EMAIL_RE.fullmatch(email):
        raise InvalidIdentifier("email", "not a valid email address")
    email = unicodedata.normalize("NFC", email)
    lowered = email.lower()
    if unicodedata.normalize("NFC", lowered) != lowered:
        # E.g. "J" + combining caron: "J̌" has no precomposed form, but "ǰ" has. Lower-casing the
        # stored spelling would then not give the comparison form, so one person would have two.
        raise InvalidIdentifier(
            "email",
            "has a capital letter with a combining accent whose lower-case form is a single "
            "character (e.g. J + caron); send the address in lower case",
        )
    return lowered, email


def normalise_email(value: str) -> str:
    """The comparison form of an email address: NFC, then lower-cased with :meth:`str.lower`.

    Lower case because that is how the providers match: Twilio Memory's ``email`` normalisation
    lower-cases, Segment's Profile API finds external ids only in lower case, Stripe's
    ``customers.list(email=...)`` is exact (so the caller's spelling is tried too). Not
    :meth:`str.casefold`: it turns "ß" into "ss" (and the final sigma into a medial one), an address no
    provider stores.
    Raises :class:`InvalidIdentifier` if malformed or if it holds a refused character.
    """
    return parse_email(value)[0]


def normalise_phone(value: str) -> str:
    """Validate an E.164 phone number (``+`` and 7 to 15 ASCII digits); ASCII spaces, dashes,
    dots and parentheses are dropped. A no-break or thin space is refused, not dropped."""
    phone = _PHONE_SEPARATORS.sub("", _clean("phone", value))
    if not _E164_RE.fullmatch(phone):
        raise InvalidIdentifier("phone", "not an E.164 phone number (e.g. +14155550123)")
    return phone


def validate_stripe_customer_id(value: str) -> str:
    customer_id = _clean("stripe_customer_id", value)
    if not _STRIPE_CUSTOMER_RE.fullmatch(customer_id):
        raise InvalidIdentifier("stripe_customer_id", "not a Stripe customer id (cus_...)")
    return customer_id


def validate_user_id(value: str) -> str:
    user_id = _clean("user_id", value)
    if not _USER_ID_RE.fullmatch(user_id):
        raise InvalidIdentifier("user_id", "must be 1-255 printable characters without spaces")
    return user_id


@dataclass(frozen=True)
class SubjectIdentifiers:
    """What identifies the data subject. At least one field is set.

    ``email`` is the comparison form (NFC, lower case): compared, hashed, and used for the
    lookups that match in lower case (Segment, Twilio). :attr:`email_as_given` keeps the caller's
    case (NFC too) because Stripe's ``customers.list(email=...)`` is case-sensitive; it is always
    such that ``email_as_given.lower() == email``.
    """

    email: str | None = None
    phone: str | None = None
    stripe_customer_id: str | None = None
    user_id: str | None = None
    email_as_given: str | None = field(default=None, compare=False)

    @classmethod
    def parse(
        cls,
        *,
        email: str | None = None,
        phone: str | None = None,
        stripe_customer_id: str | None = None,
        user_id: str | None = None,
    ) -> SubjectIdentifiers:
        """Validate raw input. Raises :class:`InvalidIdentifier` naming the first bad field."""
        comparison, given = parse_email(email) if email else (None, None)
        parsed = cls(
            email=comparison,
            phone=normalise_phone(phone) if phone else None,
            stripe_customer_id=validate_stripe_customer_id(stripe_customer_id)
            if stripe_customer_id
            else None,
            user_id=validate_user_id(user_id) if user_id else None,
            email_as_given=given,
        )
        if parsed.is_empty():
            raise InvalidIdentifier(
                "identifiers", "at least one of email, phone, stripe_customer_id, user_id is required"
            )
        return parsed

    def is_empty(self) -> bool:
        return not (self.email or self.phone or self.stripe_customer_id or self.user_id)

    def present(self) -> list[str]:
        """Names (not values) of the identifiers that are set, for logs and summaries."""
        return [f.name for f in fields(self) if f.name != "email_as_given" and getattr(self, f.name)]

    def __repr__(self) -> str:
        return f"SubjectIdentifiers(present={self.present()})"

    __str__ = __repr__
