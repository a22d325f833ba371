import unicodedata

import pytest

from gdpr_erasure.hashing import HashKey, identifiers_hash
from gdpr_erasure.identifiers import (
    INVISIBLE_CHARACTER,
    REFUSED_RANGES,
    InvalidIdentifier,
    SubjectIdentifiers,
    normalise_email,
    refused_character,
)

KEY = HashKey("test", b"k" * 32)


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def test_parse_normalises():
    ids = SubjectIdentifiers.parse(email=" Ann@Example.COM ", phone="+1 (415) 555-0100", user_id="u-1")
    assert ids.email == "ann@example.com"
    assert ids.email_as_given == "Ann@Example.COM"
    assert ids.phone == "+14155550100"
    assert ids.present() == ["email", "phone", "user_id"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"email": "a@b"}, "email"),
        ({"phone": "4155550100"}, "phone"),
        ({"phone": "+0123456789"}, "phone"),
        ({"stripe_customer_id": "cust_123456"}, "stripe_customer_id"),
        ({"user_id": "has space"}, "user_id"),
        ({}, "identifiers"),
    ],
)
def test_invalid_input_names_the_field_not_the_value(kwargs, field):
    with pytest.raises(InvalidIdentifier) as info:
        SubjectIdentifiers.parse(**kwargs)
    assert info.value.field == field
    for value in kwargs.values():
        assert value not in str(info.value)


def test_repr_never_shows_values():
    ids = SubjectIdentifiers.parse(email="secret.person@example.com", phone="+14155550199")
    for text in (repr(ids), str(ids), f"{ids}"):
        assert "secret" not in text
        assert "0199" not in text


# -- one person, one spelling --------------------------------------------------------------------

# The same address written four ways: precomposed or decomposed accents, any case.
ZOE_SPELLINGS = [
    "zo\u00eb@b\u00fccher.example",  # NFC
    nfd("zo\u00eb@b\u00fccher.example"),  # e + COMBINING DIAERESIS
    "Zo\u00eb@B\u00fccher.Example",
    nfd("ZO\u00cb@B\u00dcCHER.EXAMPLE"),
]


@pytest.mark.parametrize("spelling", ZOE_SPELLINGS)
def test_spellings_of_one_address_have_one_comparison_form(spelling):
    ids = SubjectIdentifiers.parse(email=spelling)

    assert ids.email == "zo\u00eb@b\u00fccher.example"
    assert ids == SubjectIdentifiers.parse(email=ZOE_SPELLINGS[0])
    # The spelling kept for Stripe's case-sensitive lookup is NFC, with the caller's case...
    assert ids.email_as_given == unicodedata.normalize("NFC", spelling)
    # ...and always lower-cases to the comparison form (the store rebuilds it that way).
    assert ids.email_as_given.lower() == ids.email


def test_spellings_of_one_person_hash_alike():
    hashes = {
        identifiers_hash(KEY, SubjectIdentifiers.parse(email=spelling, phone=phone))
        for spelling, phone in zip(
            ZOE_SPELLINGS,
            ["+14155550100", "+1 415 555 0100", "+1 (415) 555-0100", " +14155550100\n"],
            strict=True,
        )
    }
    assert len(hashes) == 1
    other = identifiers_hash(KEY, SubjectIdentifiers.parse(email="zoe@bucher.example", phone="+14155550100"))
    assert other not in hashes  # an accent is not a spelling: it is another address


def test_lower_case_is_str_lower_not_casefold():
    """Providers lower-case (Segment, Twilio Memory) or match exactly (Stripe); none case-folds.
    casefold() would turn 'ß' into 'ss' and look up an address nobody has."""
    assert normalise_email("Stra\u00dfe@Example.de") == "stra\u00dfe@example.de"
    assert normalise_email("STRASSE@example.de") == "strasse@example.de"
    assert normalise_email("\u03bf\u03c2@example.gr") == "\u03bf\u03c2@example.gr"  # final sigma kept


def test_international_domains_stay_unicode():
    """No punycode: the providers compare the string they were given, not the DNS form."""
    assert normalise_email("jane@B\u00fccher.de") == "jane@b\u00fccher.de"
    assert normalise_email("jane@xn--bcher-kva.de") == "jane@xn--bcher-kva.de"  # a different spelling


def test_capital_with_accent_that_only_composes_in_lower_case_is_refused():
    # "J" + caron has no precomposed capital; lower-cased it composes to U+01F0. Accepting it
    # would make the stored spelling lower-case to something other than the comparison form.
    with pytest.raises(InvalidIdentifier) as info:
        SubjectIdentifiers.parse(email="J\u030cane@example.com")
    assert info.value.field == "email"
    assert "lower case" in info.value.reason
    assert SubjectIdentifiers.parse(email="\u01f0ane@example.com").email == "\u01f0ane@example.com"


# -- refused characters --------------------------------------------------------------------------

INVISIBLE = {
    "zero width space": "\u200b",
    "zero width non-joiner": "\u200c",
    "zero width joiner": "\u200d",
    "word joiner": "\u2060",
    "byte order mark": "\ufeff",
    "soft hyphen": "\u00ad",
    "left-to-right mark": "\u200e",
    "right-to-left mark": "\u200f",
    "left-to-right embedding": "\u202a",
    "right-to-left override": "\u202e",
    "pop directional formatting": "\u202c",
    "left-to-right isolate": "\u2066",
    "pop directional isolate": "\u2069",
    "arabic letter mark": "\u061c",
    "mongolian vowel separator": "\u180e",
    "tag latin small a": "\U000e0061",
    "no-break space": "\u00a0",
    "narrow no-break space": "\u202f",
    "thin space": "\u2009",
    "ideographic space": "\u3000",
    "line separator": "\u2028",
    "paragraph separator": "\u2029",
    "nul": "\x00",
    "escape": "\x1b",
    "next line": "\x85",
    "backspace": "\x08",
    "combining grapheme joiner": "\u034f",
    "variation selector 16": "\ufe0f",
    "hangul filler": "\u3164",
    "halfwidth hangul filler": "\uffa0",
    "braille pattern blank": "\u2800",
    "private use": "\ue000",
    "unassigned": "\u0378",
    "noncharacter": "\ufffe",
    "lone surrogate": "\ud800",
}

FIELD_VALUES = {
    "email": ("jane.doe@example.com", 4),
    "phone": ("+14155550100", 5),
    "stripe_customer_id": ("cus_NffrFeUfNV2Hib", 6),
    "user_id": ("user-4242", 4),
}


@pytest.mark.parametrize("field", list(FIELD_VALUES))
@pytest.mark.parametrize("char", list(INVISIBLE.values()), ids=list(INVISIBLE))
def test_invisible_and_control_characters_are_refused_in_every_identifier(field, char):
    value, at = FIELD_VALUES[field]
    for spoilt in (value[:at] + char + value[at:], value + char, char + value):
        with pytest.raises(InvalidIdentifier) as info:
            SubjectIdentifiers.parse(**{field: spoilt})
        assert info.value.field == field
        assert info.value.kind == INVISIBLE_CHARACTER
        assert value not in str(info.value)
        assert value[:at] not in info.value.reason


def test_the_reason_names_the_character_not_the_value():
    with pytest.raises(InvalidIdentifier) as info:
        SubjectIdentifiers.parse(email="jane\u200b.doe@example.com")
    assert str(info.value) == (
        "email: contains an invisible format character (U+200B ZERO WIDTH SPACE): remove it "
        "(invisible, control and unassigned characters are refused)"
    )


def test_ascii_whitespace_at_the_ends_is_trimmed_nothing_else():
    assert SubjectIdentifiers.parse(email="\tjane@example.com \r\n").email == "jane@example.com"
    assert SubjectIdentifiers.parse(user_id=" u-1\n").user_id == "u-1"
    for value in (
        "jane@example.com\u00a0",
        "\u3000jane@example.com",
        "jane@exa\tmple.com",
        "jane@example.com\x85",
    ):
        with pytest.raises(InvalidIdentifier):
            SubjectIdentifiers.parse(email=value)


def test_phone_digits_must_be_ascii():
    arabic_indic = "+\u0661\u0664\u0661\u0665\u0665\u0665\u0665\u0660\u0661\u0660\u0660"
    with pytest.raises(InvalidIdentifier) as info:
        SubjectIdentifiers.parse(phone=arabic_indic)
    assert info.value.field == "phone"
    with pytest.raises(InvalidIdentifier):
        SubjectIdentifiers.parse(phone="+\uff11\uff14\uff11\uff15\uff15\uff15\uff15\uff10\uff11\uff10\uff10")


def test_visible_unicode_is_accepted():
    for email in (
        "\u7530\u4e2d@\u4f8b\u3048.jp",
        "\u0438\u0432\u0430\u043d@\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444",
        "j\u00f6rg+\U0001f600@example.com",
    ):
        assert refused_character(email) is None
        assert SubjectIdentifiers.parse(email=email).email == unicodedata.normalize("NFC", email).lower()


def test_refused_table_covers_every_such_code_point_this_python_knows():
    """REFUSED_RANGES builds the intake's published email pattern: it must hold every control,
    format, private-use and separator character of the running Unicode version (a newer Python
    may add some: extend the table and regenerate docs/intake-openapi.json)."""
    table = {cp for start, end in REFUSED_RANGES for cp in range(start, end + 1)}
    missing = [
        f"U+{cp:04X}"
        for cp in range(0x110000)
        if not 0xD800 <= cp <= 0xDFFF
        and cp != 0x20
        and unicodedata.category(chr(cp)) in ("Cc", "Cf", "Co", "Zs", "Zl", "Zp")
        and cp not in table
    ]
    assert missing == []
    assert all(refused_character(chr(cp)) for cp in sorted(table))
    assert all(start <= end for start, end in REFUSED_RANGES)
    assert [start for start, _ in REFUSED_RANGES] == sorted(start for start, _ in REFUSED_RANGES)
