import pytest

from gdpr_erasure.identifiers import InvalidIdentifier, SubjectIdentifiers


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
