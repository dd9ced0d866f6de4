"""Signing in through the real pages, and reading the CSRF token a page hands out."""

import re

from fastapi.testclient import TestClient
from httpx import Response

from tertulia.kit.db import Database
from tertulia.users.models import User

CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
CSRF_META = re.compile(r'name="csrf-token" content="([^"]+)"')


def csrf_from(response: Response) -> str:
    match = CSRF_META.search(response.text) or CSRF_FIELD.search(response.text)
    assert match, "the page carries no CSRF token"
    return match.group(1)


def email_of(db: Database, user_id: int) -> str:
    with db.transaction(write=False) as session:
        user = session.get(User, user_id)
        assert user is not None
        return user.email


def sign_in(client: TestClient, email: str, password: str) -> str:
    """Signs in through /login and returns the session's CSRF token."""
    page = client.get("/login")
    response = client.post(
        "/login",
        data={"email": email, "password": password, "next": "/contacts", "csrf_token": csrf_from(page)},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    return csrf_from(client.get("/contacts"))


def sign_in_as(client: TestClient, db: Database, user_id: int, password: str) -> str:
    return sign_in(client, email_of(db, user_id), password)
