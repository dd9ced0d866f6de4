"""A template whose header is a place (LOCATION): `check_template_message`, which every sender
(the inbox and API, broadcasts, workflows) goes through, takes a latitude in [-90, 90] and a
longitude in [-180, 180] (numbers or decimal strings) and optionally the place's name and address,
sends them in Meta's form (`{"type": "location", "location": {"latitude": "37.48", ...}}`, as the
utility location templates page writes it: developers.facebook.com/documentation/business-messaging/
whatsapp/templates/utility-templates/location-templates), and refuses anything else naming the key
at fault. The template is whatsapp_template_samples' ORDER_DELIVERY_UPDATE, Meta's own sample."""

import math
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from tertulia.channels.message_templates import check_template_message, coordinate
from tertulia.channels.models import Channel
from tertulia.conversations.models import Message
from tertulia.kit.clock import travel
from tertulia.kit.db import Database
from tertulia.kit.errors import ValidationFailed
from tertulia.users.models import Role
from tests.channels import whatsapp_template_samples as samples
from tests.channels.fake_graph import FakeGraph, connect_whatsapp, fake_graph
from tests.conftest import Tenant
from tests.conversations.support import sign_in
from tests.workflows.test_message_variants import whatsapp_customer

BODY = {"type": "body", "parameters": [{"type": "text", "text": "Ana"}, {"type": "text", "text": "566701"}]}
WHERE = "message.template.components[0].parameters[0]"


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    with fake_graph(samples.TEMPLATES) as server:
        yield server


def delivery(place: Any, kind: str = "location") -> dict[str, Any]:
    header = {"type": "header", "parameters": [{"type": kind, kind: place}]}
    return {"name": "order_delivery_update", "language": {"code": "en_US"}, "components": [header, BODY]}


@pytest.fixture
def channel_id(client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph) -> int:
    created = connect_whatsapp(client, sign_in(db, tenant, Role.MANAGER).headers, graph)
    found: int = created["id"]
    return found


def checked(db: Database, channel_id: int, given_template: dict[str, Any]) -> dict[str, Any]:
    with db.transaction(write=False) as session:
        channel = session.get(Channel, channel_id)
        assert channel is not None
        message, _text = check_template_message(session, channel, given_template)
    return message


def refusal(db: Database, channel_id: int, given_template: dict[str, Any]) -> dict[str, str]:
    with db.transaction(write=False) as session:
        channel = session.get(Channel, channel_id)
        assert channel is not None
        with pytest.raises(ValidationFailed) as caught:
            check_template_message(session, channel, given_template)
    assert caught.value.code == "template_parameters"
    details: dict[str, str] = caught.value.details
    return details


@pytest.mark.parametrize(
    ("place", "sent"),
    [
        (
            {"latitude": "37.483307", "longitude": "122.148981", "name": "Pablo Morales", "address": "1 Hacker Way"},
            {"latitude": "37.483307", "longitude": "122.148981", "name": "Pablo Morales", "address": "1 Hacker Way"},
        ),
        ({"latitude": 19.4326, "longitude": -99.1332}, {"latitude": "19.4326", "longitude": "-99.1332"}),
        ({"latitude": -90, "longitude": 180, "name": "  "}, {"latitude": "-90", "longitude": "180"}),
        ({"latitude": " +0.5 ", "longitude": "-.25", "address": None}, {"latitude": "0.5", "longitude": "-0.25"}),
        ({"latitude": 1e-05, "longitude": 0}, {"latitude": "0.00001", "longitude": "0"}),
    ],
)
def test_a_place_goes_out_in_meta_s_form(
    db: Database, channel_id: int, place: dict[str, Any], sent: dict[str, str]
) -> None:
    message = checked(db, channel_id, delivery(place))
    assert message["components"][0] == {"type": "header", "parameters": [{"type": "location", "location": sent}]}


@pytest.mark.parametrize(
    ("place", "path", "reason"),
    [
        ("19.4,-99.1", "location", "give its latitude and longitude"),
        ({"longitude": "-99.1"}, "location.latitude", "the latitude must be a number from -90 to 90"),
        ({"latitude": "90.0001", "longitude": 0}, "location.latitude", "the latitude must be a number from -90 to 90"),
        ({"latitude": 0, "longitude": -180.5}, "location.longitude", "the longitude must be a number from -180 to 180"),
        ({"latitude": "NaN", "longitude": 0}, "location.latitude", "the latitude must be a number from -90 to 90"),
        ({"latitude": 0, "longitude": "inf"}, "location.longitude", "the longitude must be a number from -180 to 180"),
        ({"latitude": "1e1", "longitude": 0}, "location.latitude", "the latitude must be a number from -90 to 90"),
        ({"latitude": True, "longitude": 0}, "location.latitude", "the latitude must be a number from -90 to 90"),
        ({"latitude": "", "longitude": 0}, "location.latitude", "the latitude must be a number from -90 to 90"),
        (
            {"latitude": 0, "longitude": 0, "name": 7},
            "location.name",
            "must be text of at most 500 characters, without control characters",
        ),
        (
            {"latitude": 0, "longitude": 0, "address": "x" * 501},
            "location.address",
            "must be text of at most 500 characters, without control characters",
        ),
        (
            {"latitude": 0, "longitude": 0, "zoom": 3},
            "location.zoom",
            "a place has a latitude, a longitude, a name and an address only",
        ),
    ],
)
def test_a_place_meta_would_not_take_is_refused_naming_the_key(
    db: Database, channel_id: int, place: Any, path: str, reason: str
) -> None:
    assert refusal(db, channel_id, delivery(place)) == {
        f"{WHERE}.{path}": f"the header of 'order_delivery_update' takes a place: {reason}"
    }


def test_a_location_header_takes_no_file_and_a_file_header_no_place(db: Database, channel_id: int) -> None:
    assert refusal(db, channel_id, delivery({"link": "https://x.example/a.jpg"}, kind="image")) == {
        WHERE: "the header of 'order_delivery_update' takes a location"
    }


# Decimal strings and numbers in range, and what is not a coordinate.
LATITUDES = st.one_of(
    st.floats(min_value=-90, max_value=90),
    st.integers(min_value=-90, max_value=90),
    st.decimals(min_value=-90, max_value=90, allow_nan=False, allow_infinity=False, places=6).map(str),
)
ANYTHING = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=30),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.lists(st.integers(), max_size=2),
)


def plain_decimal(text: str) -> bool:
    """Digits with at most one point, an optional sign in front: what a coordinate may be written as."""
    body = text[1:] if text[:1] in "+-" else text
    digits = body.replace(".", "", 1)
    return digits.isascii() and digits.isdigit()


@settings(max_examples=150)
@given(value=st.one_of(LATITUDES, ANYTHING))
def test_a_latitude_is_taken_exactly_when_it_is_a_finite_number_from_minus_90_to_90(value: Any) -> None:
    written = coordinate(value, 90)
    number: Decimal | None = None
    if isinstance(value, float) and math.isfinite(value):
        number = Decimal(repr(value))
    elif isinstance(value, int) and not isinstance(value, bool):
        number = Decimal(value)
    elif isinstance(value, str) and plain_decimal(value.strip()):
        number = Decimal(value.strip())
    if number is None or abs(number) > 90:
        assert written is None, value
    else:
        # What is sent is the same number, written as a plain decimal.
        assert written is not None, value
        assert Decimal(written) == number
        assert plain_decimal(written), written


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    place=st.one_of(
        ANYTHING, st.dictionaries(st.sampled_from(["latitude", "longitude", "name", "address", "x"]), ANYTHING)
    )
)
def test_any_place_is_sent_with_both_coordinates_in_range_or_refused_naming_a_key(
    db: Database, channel_id: int, place: Any
) -> None:
    try:
        message = checked(db, channel_id, delivery(place))
    except ValidationFailed as exc:
        [path] = exc.details
        assert path.startswith(f"{WHERE}.location"), path
        return
    sent = message["components"][0]["parameters"][0]["location"]
    assert abs(Decimal(sent["latitude"])) <= 90
    assert abs(Decimal(sent["longitude"])) <= 180
    assert set(sent) <= {"latitude", "longitude", "name", "address"}


def test_the_api_sends_a_place_to_meta_and_refuses_one_without_coordinates(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    contact_id = whatsapp_customer(client, db, tenant, graph)
    with db.transaction(write=False) as session:
        channel_id = session.scalar(select(Channel.id).where(Channel.type == "whatsapp"))
    url = f"/api/v1/contacts/id:{contact_id}/messages"
    place = {"latitude": "19.4326", "longitude": "-99.1332", "name": "Tienda Centro", "address": "Madero 1, CDMX"}
    with travel(timedelta(hours=25)):
        body = {"channel_id": channel_id, "message": {"type": "whatsapp_template", "template": delivery(place)}}
        sent = client.post(url, headers=tenant.headers, json=body)
        assert sent.status_code == 201, sent.text
        bad = {**place, "latitude": "191.4326"}
        body = {"channel_id": channel_id, "message": {"type": "whatsapp_template", "template": delivery(bad)}}
        refused = client.post(url, headers=tenant.headers, json=body)
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["details"] == {
        f"{WHERE}.location.latitude": (
            "the header of 'order_delivery_update' takes a place: the latitude must be a number from -90 to 90"
        )
    }
    [request] = graph.sent  # the refused one never reached Meta
    assert request["body"]["template"]["components"][0] == {
        "type": "header",
        "parameters": [{"type": "location", "location": place}],
    }
    with db.transaction(write=False) as session:
        texts = list(session.scalars(select(Message.text).where(Message.direction == "outgoing")))
    assert texts == [
        "Good news Ana! Your order #566701 is on its way to the location above. Thank you for your order!\n\n"
        "To stop receiving delivery updates, tap the button below."
    ]
