"""Interop: the official OpenFeature Python SDK with the official OFREP
provider, evaluating flags served by a running Flagbase.

Needs FLAGBASE_URL (e.g. http://127.0.0.1:8080) and FLAGBASE_TOKEN (an
``fbk_`` API token). The flags are created by the Rust integration test
``tests/integration/ofrep_interop.rs``; see tests/interop/README.md.
"""

import os

import pytest

from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason

DOMAIN = "flagbase-interop"


@pytest.fixture(scope="module")
def client():
    base_url = os.environ.get("FLAGBASE_URL")
    token = os.environ.get("FLAGBASE_TOKEN")
    if not base_url or not token:
        pytest.fail(
            "set FLAGBASE_URL and FLAGBASE_TOKEN (an fbk_ API token); "
            "see tests/interop/README.md"
        )
    provider = OFREPProvider(
        base_url, headers_factory=lambda: {"Authorization": f"Bearer {token}"}
    )
    api.set_provider_and_wait(provider, DOMAIN)
    yield api.get_client(DOMAIN)
    api.shutdown()


def ctx(targeting_key="u1", **attributes):
    return EvaluationContext(targeting_key=targeting_key, attributes=attributes)


def ok(details):
    """No error: a silent fallback to the code default would otherwise pass."""
    assert details.error_code is None, details
    assert details.error_message is None, details
    return details


def test_boolean_targeting_match(client):
    d = ok(client.get_boolean_details("new-checkout-ui", False, ctx(role="developer")))
    assert d.value is True
    assert d.reason == Reason.TARGETING_MATCH
    assert d.flag_key == "new-checkout-ui"


def test_boolean_default(client):
    # The code default is True, so False can only come from the server.
    d = ok(client.get_boolean_details("new-checkout-ui", True, ctx(role="user")))
    assert d.value is False
    # OFREP has no DEFAULT reason; Flagbase sends UNKNOWN (see README).
    assert d.reason == Reason.UNKNOWN
    assert d.variant == "false"


def test_string_variant(client):
    d = ok(client.get_string_details("banner-text", "code-default", ctx(country="NL")))
    assert d.value == "hi B"
    assert d.variant == "b"
    assert d.reason == Reason.TARGETING_MATCH


def test_string_default(client):
    d = ok(client.get_string_details("banner-text", "code-default", ctx(country="DE")))
    assert d.value == "hello"
    assert d.reason == Reason.UNKNOWN
    assert d.variant == '"hello"'


def test_number_rule(client):
    # OFREP has no flag types; 50 arrives as a JSON integer, which the Python
    # provider type-checks strictly (an integer flag must not be 50.0).
    d = ok(client.get_integer_details("max-items", -1, ctx(plan="pro")))
    assert d.value == 50 and isinstance(d.value, int)
    assert d.reason == Reason.TARGETING_MATCH
    assert d.variant == "50"
    other = ok(client.get_integer_details("max-items", -1, ctx(plan="free")))
    assert other.value == 10
    assert other.reason == Reason.UNKNOWN
    assert other.variant == "10"


def test_object_rule(client):
    d = ok(client.get_object_details("theme", {}, ctx(beta="true")))
    assert d.value == {"color": "red"}
    assert d.reason == Reason.TARGETING_MATCH
    other = ok(client.get_object_details("theme", {}, ctx(beta="false")))
    assert other.value == {"color": "blue"}
    assert other.reason == Reason.UNKNOWN


def test_rollout_targeted_user(client):
    d = ok(client.get_boolean_details("new-checkout-flow", False, ctx("user-1")))
    assert d.value is True
    assert d.reason == Reason.TARGETING_MATCH
    assert d.variant == "true"


def test_rollout_outside_percentage(client):
    # user-42 lands in bucket 73, outside the 25% rollout.
    d = ok(client.get_boolean_details("new-checkout-flow", True, ctx("user-42")))
    assert d.value is False
    # Outside the rollout the flag's default is served: the engine's DEFAULT,
    # which OFREP spells UNKNOWN. SPLIT would say the split chose this value.
    assert d.reason == Reason.UNKNOWN
    assert d.variant == "false"


def test_missing_flag(client):
    d = client.get_boolean_details("does-not-exist", True, ctx())
    assert d.value is True
    assert d.error_code == ErrorCode.FLAG_NOT_FOUND
    assert d.reason == Reason.ERROR


def test_type_mismatch(client):
    # banner-text is a string flag; asking for a boolean must not coerce.
    d = client.get_boolean_details("banner-text", True, ctx())
    assert d.value is True
    assert d.error_code == ErrorCode.TYPE_MISMATCH
    assert d.reason == Reason.ERROR
