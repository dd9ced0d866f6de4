"""A stand-in for the WhatsApp Cloud API's send endpoint, fast enough for the outbound benchmark.

`python -m bench.fake_graph PORT LOG`: answers `POST /{version}/{phone-number-id}/messages` as the
Cloud API documents it (`{"messaging_product": "whatsapp", "contacts": [{"input", "wa_id"}],
"messages": [{"id": "wamid..."}]}`, see ../shared/reference/channels.md section 3.3) and appends one
line per request to LOG: the time it arrived (time.time()), the phone number id and the recipient.
Raw asyncio with keep-alive, no framework: at hundreds of requests a second in a process that
shares two cores with the system under test, a framework's overhead would be what is measured.
"""

import asyncio
import json
import sys
import time
import uuid
from pathlib import Path


async def _serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, log: list[str]) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            length = 0
            for line in header_lines:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            body = await reader.readexactly(length) if length else b""
            parts = request_line.split(" ")
            path = parts[1] if len(parts) > 1 else "/"
            segments = path.strip("/").split("/")
            if parts[0] != "POST" or len(segments) < 3 or segments[-1] != "messages":
                answer, status = {"error": {"message": "Unknown path", "type": "OAuthException", "code": 100}}, 400
            else:
                number = segments[-2]
                to = str(json.loads(body or b"{}").get("to", ""))
                log.append(f"{time.time():.6f} {number} {to}\n")
                answer = {
                    "messaging_product": "whatsapp",
                    "contacts": [{"input": to, "wa_id": to}],
                    "messages": [{"id": f"wamid.{uuid.uuid4().hex}"}],
                }
                status = 200
            payload = json.dumps(answer).encode()
            reason = "OK" if status == 200 else "Bad Request"
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _main(port: int, log_path: Path) -> None:
    log: list[str] = []

    async def flush() -> None:
        with log_path.open("a") as output:
            while True:
                await asyncio.sleep(0.2)
                lines, log[:] = log[:], []
                output.writelines(lines)
                output.flush()

    server = await asyncio.start_server(lambda r, w: _serve_connection(r, w, log), "127.0.0.1", port)
    flusher = asyncio.create_task(flush())
    async with server:
        await server.serve_forever()
    flusher.cancel()


if __name__ == "__main__":
    asyncio.run(_main(int(sys.argv[1]), Path(sys.argv[2])))
