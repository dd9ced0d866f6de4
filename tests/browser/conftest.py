"""Browser tests share the machine with the rest of the suite: give assertions room under load."""

from playwright.sync_api import expect

# Playwright's default of 5 s is tight while two test workers and PostgreSQL share two cores;
# a passing assertion returns as soon as it holds, so this only matters when the machine is busy.
expect.set_options(timeout=15_000)
