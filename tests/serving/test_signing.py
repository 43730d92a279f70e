"""depot.http.signing: signed URLs verify and nothing else does; keys rotate; nothing raises."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from depot.exceptions import ConfigurationError
from depot.http.signing import ServingPolicy, check_signature, parse_keys, sign_query
from depot.manager import DepotManager

KEY, OLD_KEY, OTHER_KEY = b"k" * 32, b"o" * 32, b"x" * 32
ID = "6f9c4cbf-07b1-4496-b4e9-c6d4605ff5f1"
NOW = 1_800_000_000


def signed(expires_at: int = NOW + 300, keys=(KEY,), depot="default", file_id=ID) -> str:
    return sign_query(keys, depot, file_id, expires_at)


def test_round_trip_gives_the_expiry() -> None:
    verdict = check_signature([KEY], "default", ID, signed(), NOW)
    assert verdict.valid and verdict.expires_at == NOW + 300


def test_expired_at_the_second_of_its_expiry() -> None:
    query = signed(NOW)
    assert check_signature([KEY], "default", ID, query, NOW - 1).valid
    verdict = check_signature([KEY], "default", ID, query, NOW)
    assert verdict.state == "invalid" and verdict.reason == "expired"


@pytest.mark.parametrize(
    ("depot", "file_id", "change"),
    [
        ("other", ID, None),  # moved to another depot
        ("default", ID[:-1] + "0", None),  # moved to another file
        ("default", ID, ("expires=1800000300", "expires=1800009999")),  # later expiry
        ("default", ID, ("signature=", "signature=A")),  # a character more
    ],
)
def test_tampered_urls_are_invalid(depot: str, file_id: str, change) -> None:
    query = signed()
    if change:
        query = query.replace(*change)
    assert check_signature([KEY], depot, file_id, query, NOW).state == "invalid"


def test_wrong_key_is_invalid() -> None:
    assert check_signature([OTHER_KEY], "default", ID, signed(), NOW).state == "invalid"


def test_rotation_new_key_signs_old_keys_still_verify() -> None:
    old_link = signed(keys=(OLD_KEY,))
    rotated = (KEY, OLD_KEY)
    assert check_signature(rotated, "default", ID, old_link, NOW).valid
    new_link = signed(keys=rotated)
    assert check_signature((KEY,), "default", ID, new_link, NOW).valid
    assert check_signature((OLD_KEY,), "default", ID, new_link, NOW).state == "invalid"
    # The old key dropped: its links stop working.
    assert check_signature((KEY,), "default", ID, old_link, NOW).state == "invalid"


@pytest.mark.parametrize(
    "query",
    [
        "",
        "v=2",
        "v=2&expiresX=1",
    ],
)
def test_no_signature_is_absent(query: str) -> None:
    assert check_signature([KEY], "default", ID, query, NOW).absent


def test_other_parameters_are_ignored() -> None:
    assert check_signature([KEY], "default", ID, "v=2&" + signed() + "&x=1", NOW).valid


@pytest.mark.parametrize(
    "query",
    [
        "expires=1800000300",  # no signature
        "signature=" + "A" * 43,  # no expiry
        None,  # duplicated: set below
        "expires=-1&signature=" + "A" * 43,
        "expires=1e9&signature=" + "A" * 43,
        "expires=" + "9" * 40 + "&signature=" + "A" * 43,
        "expires=١٢٣&signature=" + "A" * 43,  # non-ASCII digits
        "expires=1800000300&signature=%FF%FE",
        "expires=1800000300&signature=" + "é" * 43,
        "expires=1800000300&signature=" + "A" * 5000,
    ],
)
def test_malformed_signatures_are_invalid(query: str | None) -> None:
    if query is None:
        query = signed() + "&" + signed()
    assert check_signature([KEY], "default", ID, query, NOW).state == "invalid"


@given(st.text(max_size=300))
def test_no_query_string_raises(query: str) -> None:
    verdict = check_signature([KEY], "default", ID, query, NOW)
    assert verdict.state in ("absent", "invalid")


@given(st.text(max_size=60), st.text(max_size=60))
def test_any_name_and_id_round_trip(depot: str, file_id: str) -> None:
    query = sign_query([KEY], depot, file_id, NOW + 1)
    assert check_signature([KEY], depot, file_id, query, NOW).valid
    assert check_signature([KEY], depot + "x", file_id, query, NOW).state == "invalid"


def test_policy_repr_never_shows_keys() -> None:
    assert "kkkk" not in repr(ServingPolicy(True, [KEY]))


@pytest.mark.parametrize(
    ("value", "keys"),
    [
        (None, ()),
        ("", ()),
        ("a" * 16, (b"a" * 16,)),
        ("a" * 16 + ", " + "b" * 20, (b"a" * 16, b"b" * 20)),
        ("a" * 16 + "\n  " + "b" * 20, (b"a" * 16, b"b" * 20)),
        ([b"a" * 16, "b" * 16], (b"a" * 16, b"b" * 16)),
    ],
)
def test_keys_from_settings(value, keys) -> None:
    assert parse_keys(value, "depot.signing_keys") == keys


@pytest.mark.parametrize("value", ["short", ["a" * 16, 5], 42])
def test_bad_keys_say_what_to_do(value) -> None:
    with pytest.raises(ValueError, match="depot.signing_keys"):
        parse_keys(value, "depot.signing_keys")


def test_private_depot_needs_keys() -> None:
    with pytest.raises(ConfigurationError, match="signing_keys.*secrets.token_urlsafe"):
        DepotManager.configure("default", {"depot.backend": "memory", "depot.private": "true"})


def test_short_key_is_refused_at_configure() -> None:
    with pytest.raises(ConfigurationError, match="at least 16"):
        DepotManager.configure(
            "default", {"depot.backend": "memory", "depot.signing_keys": "short"}
        )


def test_serving_settings_never_reach_the_backend_and_are_listed(tmp_path) -> None:
    DepotManager.configure(
        "default",
        {"depot.backend": "memory", "depot.private": "yes", "depot.signing_keys": "k" * 20},
    )
    policy = DepotManager.serving_policy("default")
    assert policy.private and policy.keys == (b"k" * 20,)
    DepotManager.alias("files", "default")
    assert DepotManager.serving_policy("files") is policy
    assert not DepotManager.serving_policy("nowhere").private
    with pytest.raises(ConfigurationError, match="depot.signing_keys"):
        DepotManager.configure("other", {"depot.storage_path": str(tmp_path), "depot.typo": "1"})
    DepotManager.reset()
    assert not DepotManager.serving_policy("default").private


def test_url_for_signs_with_the_first_key(monkeypatch: pytest.MonkeyPatch) -> None:
    DepotManager.configure(
        "default", {"depot.backend": "memory", "depot.signing_keys": [KEY, OLD_KEY]}
    )
    DepotManager.make_middleware(lambda e, s: [])
    monkeypatch.setattr("depot.manager.time.time", lambda: NOW + 0.7)
    url = DepotManager.url_for(f"default/{ID}", expires_in=60)
    path, _, query = url.partition("?")
    assert path == f"/depot/default/{ID}"
    assert query == sign_query([KEY], "default", ID, NOW + 60)
    assert DepotManager.url_for(f"default/{ID}") == path  # filedepot's URL, unsigned


@pytest.mark.parametrize("expires_in", [0, -5, True, 1.5, "60"])
def test_url_for_expires_in_must_be_positive_seconds(expires_in) -> None:
    DepotManager.configure("default", {"depot.backend": "memory", "depot.signing_keys": KEY})
    DepotManager.make_middleware(lambda e, s: [])
    with pytest.raises(ValueError, match="expires_in"):
        DepotManager.url_for(f"default/{ID}", expires_in=expires_in)


def test_url_for_expires_in_needs_keys() -> None:
    DepotManager.configure("default", {"depot.backend": "memory"})
    DepotManager.make_middleware(lambda e, s: [])
    with pytest.raises(ConfigurationError, match="depot.signing_keys"):
        DepotManager.url_for(f"default/{ID}", expires_in=60)
