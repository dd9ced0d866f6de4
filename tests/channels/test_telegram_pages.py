"""Settings > Channels for Telegram, through the real pages against the local fake Bot API: connecting
by token (Telegram's refusals beside the field, in Spanish and English), the channel's health, the
chat menu (pushed to Telegram, its answer shown), disconnecting and connecting again."""

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tertulia.channels.models import Channel
from tertulia.kit.db import Database
from tests.channels.fake_telegram import BOT_TOKEN, FakeTelegram, fake_telegram
from tests.conftest import Tenant
from tests.web.helpers import sign_in_as

WRONG_TOKEN = "999:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    with fake_telegram() as server:
        server.add_bot()
        yield server


def _connect(client: TestClient, token: str, fake: FakeTelegram, csrf: str, **headers: str) -> object:
    return client.post(
        "/settings/channels/telegram",
        data={"bot_token": token, "name": "", "api_base_url": fake.url, "csrf_token": csrf},
        headers=headers,
        follow_redirects=False,
    )


def test_connecting_from_the_page(client: TestClient, db: Database, tenant: Tenant, fake: FakeTelegram) -> None:
    csrf = sign_in_as(client, db, tenant.owner_id, "owner-password")
    page = client.get("/settings/channels")
    assert page.status_code == 200
    assert 'data-testid="connect-telegram"' in page.text
    refused = client.post(
        "/settings/channels/telegram",
        data={"bot_token": WRONG_TOKEN, "name": "Ventas", "api_base_url": fake.url, "csrf_token": csrf},
        headers={"Accept-Language": "es"},
    )
    assert refused.status_code == 422
    assert "Telegram rechazó el token: Unauthorized" in refused.text
    assert WRONG_TOKEN not in refused.text  # a secret is never put back into the page
    assert 'value="Ventas"' in refused.text
    english = client.post(
        "/settings/channels/telegram",
        data={"bot_token": "not-a-token", "api_base_url": fake.url, "csrf_token": csrf},
        headers={"Accept-Language": "en"},
    )
    assert english.status_code == 422
    assert "must be the token @BotFather gave you" in english.text
    done = client.post(
        "/settings/channels/telegram",
        data={"bot_token": BOT_TOKEN, "name": "", "api_base_url": fake.url, "csrf_token": csrf},
        follow_redirects=False,
    )
    assert done.status_code == 303
    detail = client.get(done.headers["location"])
    assert 'data-testid="bot-name"' in detail.text
    assert "@tertulia_test_bot" in detail.text
    assert "Connected" in detail.text
    assert fake.webhooks[BOT_TOKEN]["url"] in detail.text  # the callback URL, to check
    assert BOT_TOKEN not in detail.text
    overview = client.get("/settings/channels")
    assert "@tertulia_test_bot" in overview.text
    assert 'data-testid="channel-today">0 / 0<' in overview.text


def test_the_chat_menu_is_pushed_and_telegrams_answer_shown(
    client: TestClient, db: Database, tenant: Tenant, fake: FakeTelegram
) -> None:
    csrf = sign_in_as(client, db, tenant.owner_id, "owner-password")
    done = client.post(
        "/settings/channels/telegram",
        data={"bot_token": BOT_TOKEN, "api_base_url": fake.url, "csrf_token": csrf},
        follow_redirects=False,
    )
    detail_url = done.headers["location"]
    menu_url = f"{detail_url}/menu"
    assert client.get(menu_url).status_code == 200
    bad = client.post(
        menu_url,
        data={"menu": "/precios Ver precios\n/con-guion Algo", "csrf_token": csrf},
        headers={"Accept-Language": "es"},
    )
    assert bad.status_code == 422
    assert "Línea 2" in bad.text
    assert fake.called("setMyCommands") == []
    fake.fail_next("setMyCommands", 400, "Bad Request: BOT_COMMANDS_TOO_MUCH")
    refused = client.post(menu_url, data={"menu": "/precios Ver precios", "csrf_token": csrf})
    assert refused.status_code == 422
    assert "Telegram refused the menu: Bad Request: BOT_COMMANDS_TOO_MUCH" in refused.text
    saved = client.post(menu_url, data={"menu": "/precios Ver precios\n/horario Horario", "csrf_token": csrf})
    assert saved.status_code == 200
    assert 'data-testid="provider-answer"' in saved.text
    assert "&#34;ok&#34;: true" in saved.text or '"ok": true' in saved.text
    assert fake.commands[BOT_TOKEN] == [
        {"command": "precios", "description": "Ver precios"},
        {"command": "horario", "description": "Horario"},
    ]
    with db.transaction(write=False) as session:
        channel = session.scalar(select(Channel).where(Channel.type == "telegram"))
        assert channel is not None
        assert channel.config["menu"][0] == {"command": "precios", "description": "Ver precios"}


def test_disconnect_and_connect_again(client: TestClient, db: Database, tenant: Tenant, fake: FakeTelegram) -> None:
    csrf = sign_in_as(client, db, tenant.owner_id, "owner-password")
    done = client.post(
        "/settings/channels/telegram",
        data={"bot_token": BOT_TOKEN, "api_base_url": fake.url, "csrf_token": csrf},
        follow_redirects=False,
    )
    detail_url = done.headers["location"]
    off = client.post(f"{detail_url}/disconnect", data={"csrf_token": csrf})
    assert off.status_code == 200
    assert "Disconnected" in off.text
    assert BOT_TOKEN not in fake.webhooks
    fake.require_https = True  # a real Telegram refuses a plain-HTTP callback address
    again = client.post(f"{detail_url}/connect", data={"csrf_token": csrf}, headers={"Accept-Language": "es"})
    assert again.status_code == 422
    assert "Telegram rechazó la dirección de retorno de este servidor" in again.text
    fake.require_https = False
    assert client.post(f"{detail_url}/connect", data={"csrf_token": csrf}).status_code == 200
    assert BOT_TOKEN in fake.webhooks


def test_agents_cannot_open_channel_settings(client: TestClient, db: Database, tenant: Tenant) -> None:
    sign_in_as(client, db, tenant.agent_id, "agent-password")
    assert client.get("/settings/channels").status_code == 403
