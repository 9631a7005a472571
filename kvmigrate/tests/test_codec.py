import json

import pytest

from kvmigrate.codec import (
    DecodeError,
    ParsedKey,
    decode_value,
    decode_with_depth,
    encode_once,
    encode_value,
    parse_key,
    parse_user_id,
)

RECORD = {
    "currentBalance": -20,
    "isBlocked": True,
    "transactions": [
        {"type": "debit", "amount": 70, "description": "café ☕ 🦆", "timestamp": 1730505600000}
    ],
    "notifications": [None, 1, None, 1],
    "unknown": {"nested": ["x", 1.5, False]},
}


def test_platform_value_is_json_twice():
    raw = encode_value({"currentBalance": 180})
    assert raw == '"{\\"currentBalance\\":180}"'
    assert decode_value(raw) == {"currentBalance": 180}
    assert decode_with_depth(raw) == ({"currentBalance": 180}, 2)


@pytest.mark.parametrize(
    "obj", [RECORD, [1, 2, 3], {"a": "line\nbreak", "b": 'quote " \\ back'}, {}, [], 0, 7, -3, True, None]
)
def test_round_trip_double_and_once(obj):
    assert decode_value(encode_value(obj)) == obj
    assert decode_value(encode_once(obj)) == obj  # a value encoded once is accepted too


def test_firebase_uid_scalar():
    # JSON.stringify(7) -> "7", then the client's JSON.stringify -> "\"7\"".
    assert encode_value(7) == '"7"'
    assert decode_with_depth('"7"') == (7, 2)
    assert decode_with_depth("7") == (7, 1)


def test_genuine_string_values_stop_decoding():
    assert decode_value(encode_value("hello")) == "hello"
    assert decode_value(json.dumps("not json {")) == "not json {"


def test_triple_encoding_is_decoded_too():
    raw = json.dumps(encode_value({"a": 1}))
    assert decode_with_depth(raw) == ({"a": 1}, 3)


def test_compact_and_non_ascii_like_json_stringify():
    assert encode_once({"a": [1, 2], "b": "é"}) == '{"a":[1,2],"b":"é"}'
    assert encode_once({"x": 1.0, "y": 2.5}) == '{"x":1,"y":2.5}'  # JS prints 1.0 as 1
    assert encode_once("\ud800") == '"\\ud800"'  # a lone surrogate, escaped as JS does
    assert encode_value({"a": "\u2028"}).encode("utf-8")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty value"),
        ("   ", "empty value"),
        ("undefined", "invalid JSON"),
        ("{currentBalance: 5}", "invalid JSON"),
        ('"{\\"currentBalance\\":1', "invalid JSON"),  # cut short: unterminated string
        ('"[object Object]"', "invalid JSON inside the encoded string"),
        (json.dumps('{"a": 1'), "invalid JSON inside the encoded string"),
        ("NaN", "invalid JSON"),
        ('{"a": Infinity}', "invalid JSON"),
        ('{"a": 1} trailing', "invalid JSON"),
    ],
)
def test_bad_values_raise_with_a_reason(raw, reason):
    with pytest.raises(DecodeError) as exc:
        decode_value(raw)
    assert exc.value.reason.startswith(reason)


def test_too_deep_encoding_is_refused():
    raw = "1"
    for _ in range(8):
        raw = json.dumps(raw)
    with pytest.raises(DecodeError, match="more than"):
        decode_value(raw)


def test_non_string_raw_is_refused():
    with pytest.raises(DecodeError):
        decode_value(b"{}")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("key", "expected", "layout", "user_id"),
    [
        ("user_credits:7", ("user_credits", "7"), "real", 7),
        ("user_tokens:12", ("user_tokens", "12"), "real", 12),
        ("firebase_uid:AbC123", ("firebase_uid", "AbC123"), "real", None),
        ("credits:7", ("credits", "7"), "plan", 7),
        ("subscription:9", ("subscription", "9"), "plan", 9),
        ("gmail:3", ("gmail", "3"), "plan", 3),
        ("notifications:4", ("notifications", "4"), "plan", 4),
        ("user_credits:abc", ("user_credits", "abc"), "real", None),
        ("user_credits:7/profile", ("user_credits", "7/profile"), "real", None),
        ("user_credits:", ("user_credits", ""), "real", None),
    ],
)
def test_parse_known_keys(key, expected, layout, user_id):
    parsed = parse_key(key)
    assert parsed == expected
    assert isinstance(parsed, ParsedKey)
    assert parsed.layout == layout
    assert parsed.user_id == user_id


@pytest.mark.parametrize(
    "key",
    ["session:abc", "User_credits:7", "user_credits_backup:7", "usercredits:7", "credits", "", "cache:a/b c"],
)
def test_other_prefixes_are_not_ours(key):
    assert parse_key(key) is None


@pytest.mark.parametrize(
    "ident", ["0", "007", "+7", "-7", " 7", "7 ", "7\n", "7.0", "٧", "1e3", "9223372036854775808"]
)
def test_user_ids_are_strict(ident):
    assert parse_user_id(ident) is None


def test_user_id_bounds():
    assert parse_user_id("1") == 1
    assert parse_user_id("9223372036854775807") == 2**63 - 1


def test_floats_and_float_lookalikes():
    for obj in [{"v": 1e-7}, {"v": 1e16}, {"v": 0.1}, {"v": -2.0}, [1.5e300]]:
        assert decode_value(encode_value(obj)) == obj
    # strings that merely look like Python floats are left alone
    assert encode_once({"v": "v1.0 e-mail 3e+2"}) == '{"v":"v1.0 e-mail 3e+2"}'
    with pytest.raises(ValueError):
        encode_value({"v": float("nan")})
