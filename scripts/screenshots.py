"""Regenerate the screenshots in docs/screenshots/ from a demo workspace.

    .venv/bin/python scripts/screenshots.py              # starts its own demo server on a free port
    .venv/bin/python scripts/screenshots.py --base-url http://127.0.0.1:8000   # use a running demo

Drives Debian's Chromium through Playwright (see DEVELOPERS.md); signs in as the demo owner.
"""

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from playwright.sync_api import Browser, Page, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
CHROMIUM = os.environ.get("TERTULIA_CHROMIUM", "/usr/bin/chromium")
EMAIL = "owner@demo.example.com"
PASSWORD = "tertulia-demo"  # noqa: S105 (the documented demo login)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_demo(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = dict(
        os.environ,
        TERTULIA_DATA_DIR=str(data_dir),
        TERTULIA_ARGON2_TIME_COST="1",
        TERTULIA_ARGON2_MEMORY_COST="1024",
    )
    command = [sys.executable, "-m", "tertulia", "demo", "--port", str(port), "--contacts", "120"]
    process = subprocess.Popen(command, env=env, cwd=data_dir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # noqa: S603
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"demo server exited: {process.stderr.read().decode() if process.stderr else ''}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.3)
    process.kill()
    raise SystemExit("demo server did not start in time")


def shoot(page: Page, name: str) -> None:
    page.wait_for_load_state("networkidle")
    path = OUT / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    print(f"wrote {path.relative_to(ROOT)}")


def capture_settings(page: Page, base: str) -> None:
    page.goto(f"{base}/settings/general")
    shoot(page, "13-settings-general")
    page.goto(f"{base}/settings/users")
    shoot(page, "14-settings-users")
    page.goto(f"{base}/settings/fields")
    page.fill("#f-label", "Ciudad")
    page.fill("#f-key", "Ciudad natal")
    page.click("[data-testid=create-field]")
    page.wait_for_selector("#key-error")
    shoot(page, "15-settings-fields-error")
    page.goto(f"{base}/settings/tags")
    shoot(page, "16-settings-tags")
    page.goto(f"{base}/settings/tokens")
    page.fill("input[name=name]", "Formulario web")
    page.locator("form[action='/settings/tokens'] button[type=submit]").click()
    page.wait_for_selector("[data-testid=new-token]")
    shoot(page, "17-settings-api-token")


def capture_segments(page: Page, base: str) -> None:
    page.goto(f"{base}/contacts")
    page.locator("[data-testid=segment-link]").first.click()
    page.wait_for_url("**/contacts/segments/*")
    shoot(page, "18-segment")
    page.click("[data-testid=add-segment]")
    panel = page.locator("[data-testid=filter-panel]")
    page.click("[data-testid=add-group]")
    first = panel.locator("[data-testid=filter-group]").nth(0).locator("[data-testid=condition]")
    first.locator("[data-testid=category]").select_option("field:plan")
    first.locator("[data-testid=operator] option[value=is_any_of]").wait_for(state="attached")
    first.locator("[data-testid=operator]").select_option("is_any_of")
    options = first.locator("[data-testid=value] select option")
    first.locator("[data-testid=value] select").select_option([options.nth(1).get_attribute("value") or ""])
    page.click("[data-testid=add-group]")
    second = panel.locator("[data-testid=filter-group]").nth(1).locator("[data-testid=condition]")
    second.locator("[data-testid=category]").select_option("last_incoming_message")
    second.locator("[data-testid=operator] option[value=more_than_ago]").wait_for(state="attached")
    second.locator("[data-testid=operator]").select_option("more_than_ago")
    second.locator("input[name$=amount]").fill("abc")
    page.wait_for_timeout(900)
    shoot(page, "19-filter-panel-error")
    second.locator("input[name$=amount]").fill("30")
    page.wait_for_timeout(900)
    shoot(page, "20-filter-panel")


def capture_import(page: Page, base: str) -> None:
    page.goto(f"{base}/contacts/import")
    rows = [
        "Nombre,Apellido,Correo,Teléfono,Plan,Etiquetas",
        "Lucía,Herrera,lucia.herrera@example.com,+52 55 1234 5678,Pro,vip",
        "Pedro,Gil,pedro@,+52 55 8765 4321,Básico,",
        "Sofía,Ramos,sofia.ramos@example.com,,Empresa,eventos",
    ]
    body = ("\n".join(rows) + "\n").encode()
    page.set_input_files("#f-file", files=[{"name": "clientes.csv", "mimeType": "text/csv", "buffer": body}])
    shoot(page, "21-import-upload")
    page.click("[data-testid=upload]")
    page.wait_for_url("**/contacts/import/*")
    shoot(page, "22-import-mapping")
    page.click("[data-testid=start-import]")
    page.wait_for_selector("[data-testid=import-progress][data-status=done]", timeout=30_000)
    shoot(page, "23-import-summary")


# The shop is served from this machine too: Chromium refuses a public page's requests to 127.0.0.1.
SHOP_PORT = free_port()
SHOP = f"http://127.0.0.1:{SHOP_PORT}"
SHOP_PAGE = """<!doctype html><html lang="es"><head><meta charset="utf-8"><title>Tienda</title>
<style>body{{font-family:Georgia,serif;margin:0;background:#fdf6ec;color:#3b2f2f}}
header{{background:#3b2f2f;color:#fdf6ec;padding:24px 48px;font-size:28px}}main{{padding:48px;max-width:720px}}</style>
</head><body><header>Café La Tertulia · tienda online</header>
<main><h1>Café de especialidad, tostado cada semana</h1><p>Envíos a todo México.</p></main>
{snippet}</body></html>"""


def capture_inbox(browser: Browser, page: Page, base: str) -> None:
    """A web chat set up in settings, a visitor writing from a shop, the agent answering."""
    page.goto(f"{base}/settings/channels")
    form = page.locator("[data-testid=new-channel]")
    form.locator("input[name=name]").fill("Tienda online")
    form.locator("[data-testid=allowed-origins]").fill(SHOP)
    form.locator("textarea[name=greeting]").fill("¡Hola! ¿En qué te ayudamos?")
    form.locator("input[name=color]").fill("#7a4b2a")
    form.locator("input[name=ask_name]").check()
    form.locator("button[type=submit]").click()
    page.wait_for_url("**/settings/channels/*")
    shoot(page, "24-settings-webchat")
    # The snippet names the configured base URL; the demo server here listens on another port.
    snippet = re.sub(r'src="[^"]*/widget/', f'src="{base}/widget/', page.get_by_test_id("widget-snippet").input_value())
    page.evaluate(
        """async () => {
            const csrf = document.querySelector('meta[name="csrf-token"]').content;
            await fetch('/api/v1/snippets', {method: 'POST', headers: {'Content-Type': 'application/json',
              'X-CSRF-Token': csrf}, body: JSON.stringify({shortcut: 'envios',
              text: 'Hola {{contact.first_name}}, enviamos a todo México en 2 a 4 días hábiles.'})});
        }"""
    )
    shop = browser.new_context(viewport={"width": 1366, "height": 820}, locale="es-MX")
    body = SHOP_PAGE.format(snippet=snippet).encode()

    class ShopPage(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", SHOP_PORT), ShopPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    visitor = shop.new_page()
    visitor.goto(f"{SHOP}/")
    visitor.locator("[data-tertulia-widget] .launcher").click()
    visitor.fill("[data-tertulia-widget] input[name=name]", "Lucía Herrera")
    visitor.click("[data-tertulia-widget] .prechat button[type=submit]")
    visitor.locator("[data-tertulia-widget] textarea").fill("Hola, ¿hacen envíos a Monterrey?")
    visitor.locator("[data-tertulia-widget] textarea").press("Enter")
    visitor.locator("[data-tertulia-widget] .msg.in").wait_for()
    page.goto(f"{base}/messages")
    page.locator("[data-conversation]", has_text="Lucía Herrera").click()
    page.get_by_test_id("contact-panel").wait_for()
    page.get_by_test_id("assign-me").click()
    box = page.get_by_test_id("composer-input")
    box.click()
    box.press_sequentially("/env")
    page.locator("[data-snippet-menu] [data-snippet]").first.wait_for()
    shoot(page, "25-inbox-snippets")
    box.press("Enter")
    page.wait_for_function("() => document.querySelector('[data-composer-input]').value.startsWith('Hola')")
    box.press("Enter")
    page.locator(".msg-outgoing").first.wait_for()
    shoot(page, "26-inbox")
    visitor.locator("[data-tertulia-widget] .msg.out").wait_for()
    # The agent starts another reply: the visitor sees it being written.
    box.press_sequentially("También a Saltillo", delay=250)  # longer than the 3 s between typing notices
    visitor.locator("[data-tertulia-widget] .typing").wait_for()
    shoot(visitor, "27-webchat-widget")
    page.get_by_test_id("emoji-button").click()
    page.locator("[data-emoji-panel]").wait_for()
    shoot(page, "28-inbox-emoji")
    page.keyboard.press("Escape")
    page.goto(f"{base}/settings/snippets")
    shoot(page, "29-settings-snippets")
    page.goto(f"{base}/settings/closing-categories")
    shoot(page, "30-settings-closing-categories")
    page.goto(f"{base}/messages/files")
    shoot(page, "31-files")
    shop.close()
    server.shutdown()


def capture(base: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        desktop = browser.new_context(viewport={"width": 1366, "height": 820}, locale="es-MX", device_scale_factor=1)
        page = desktop.new_page()
        page.goto(f"{base}/login")
        shoot(page, "01-sign-in")
        page.fill("input[name=email]", EMAIL)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/contacts")
        shoot(page, "02-contacts")
        page.fill("input[data-search]", "mar")
        page.wait_for_timeout(600)
        shoot(page, "03-contacts-search")
        page.goto(f"{base}/contacts")
        boxes = page.locator("input[data-select]")
        for index in range(3):
            boxes.nth(index).check()
        page.select_option("select[data-bulk-action]", "add_tag")
        page.fill("input[name=tag]", "vip")
        shoot(page, "11-bulk-actions")
        page.goto(f"{base}/contacts")
        page.locator("a.contact-cell").first.click()
        page.wait_for_url("**/contacts/*")
        shoot(page, "04-contact")
        page.locator(".prop[data-field=email] .edit-button").click()
        page.fill(".prop.editing input[name=value]", "not-an-email")
        page.locator(".prop.editing button[type=submit]").click()
        page.wait_for_selector(".prop.editing .field-error")
        shoot(page, "05-contact-edit-error")
        contact_url = page.url
        page.goto(f"{contact_url}/merge?q=mar")
        page.locator(".pick").first.click()
        shoot(page, "12-merge")
        page.goto(f"{base}/contacts/new")
        shoot(page, "06-new-contact")
        page.goto(f"{base}/profile")
        shoot(page, "07-profile")
        page.goto(f"{base}/workflows")
        shoot(page, "08-coming-soon")
        capture_settings(page, base)
        capture_segments(page, base)
        capture_import(page, base)
        capture_inbox(browser, page, base)
        # The phone signs in with the desktop's cookies (saved as storage state).
        phone = browser.new_context(
            viewport={"width": 390, "height": 844},
            locale="es-MX",
            device_scale_factor=2,
            storage_state=desktop.storage_state(),
        )
        mobile = phone.new_page()
        mobile.goto(f"{base}/contacts")
        shoot(mobile, "09-phone-contacts")
        mobile.locator(".menu-button").click()
        mobile.wait_for_timeout(300)
        shoot(mobile, "10-phone-menu")
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", help="a running demo server; default: start one")
    args = parser.parse_args()
    if args.base_url:
        capture(args.base_url.rstrip("/"))
        return
    with tempfile.TemporaryDirectory(prefix="tertulia-shots-") as tmp:
        process, base = start_demo(Path(tmp))
        try:
            capture(base)
        finally:
            process.terminate()
            process.wait(timeout=10)


if __name__ == "__main__":
    main()
