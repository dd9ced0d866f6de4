"""Concurrent sign-ins cannot outrun the throttle (SQLite and PostgreSQL).

The count used to be read, then the password verified, then the failure written: on PostgreSQL 40
concurrent wrong passwords for one account, from 40 addresses, got 26 evaluated guesses instead of 5,
and one lost the race to insert the counter row (a 409).
"""

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from tertulia.kit.db import Database
from tertulia.kit.errors import RateLimited, Unauthorized
from tertulia.kit.settings import get_settings
from tertulia.users.sessions import do_sign_in
from tests.conftest import Tenant
from tests.users.test_sessions import email_of

MAX = get_settings().login_max_failures
ATTEMPTS = 24


def _concurrent_wrong_passwords(db: Database, email: str, attempts: int) -> Counter[str]:
    start = threading.Barrier(attempts)

    def attempt(n: int) -> str:
        start.wait()
        try:
            # Like the sign-in page: a wrong password is reported and the transaction commits.
            with db.transaction() as session:
                try:
                    do_sign_in(session, email, f"wrong-{n}", client_ip=f"198.51.100.{n}")
                except Unauthorized:
                    return "evaluated"
            return "signed_in"
        except RateLimited:
            return "throttled"
        except Exception as exc:  # a lost insert race, a deadlock: counted as what it is
            return type(exc).__name__

    with ThreadPoolExecutor(attempts) as pool:
        return Counter(pool.map(attempt, range(attempts)))


def test_concurrent_wrong_passwords_get_no_more_than_the_allowed_guesses(db: Database, tenant: Tenant) -> None:
    email = email_of(db, tenant.agent_id)
    outcomes = _concurrent_wrong_passwords(db, email, ATTEMPTS)
    assert outcomes == Counter({"evaluated": MAX, "throttled": ATTEMPTS - MAX})
