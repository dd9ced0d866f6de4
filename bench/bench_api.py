"""Contact API latency through a real uvicorn server on 127.0.0.1, with N contacts in the workspace.

`python -m bench api`. Same environment variables as bench_segments (TERTULIA_BENCH_CONTACTS,
TERTULIA_BENCH_SQLITE, TERTULIA_BENCH_POSTGRES, TERTULIA_BENCH_DATABASES) plus
TERTULIA_BENCH_REQUESTS (requests per measured operation, default 300). Measures POST /contacts
and GET /contacts/{id:|email:|phone:} with one keep-alive client; the contacts it creates are
deleted afterwards so the dataset stays reusable.
"""

import os

os.environ.setdefault("TERTULIA_SECRET_KEY", "bench-secret-key")

import json
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.bench_segments import RESULTS, contacts_wanted, database_urls, ensure_postgres_database
from bench.dataset import build_dataset

REQUESTS = int(os.environ.get("TERTULIA_BENCH_REQUESTS", "300"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {"p50_ms": round(pick(0.5), 2), "p95_ms": round(pick(0.95), 2), "n": len(ordered)}


def start_server(url: str, data_dir: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = os.environ | {
        "TERTULIA_DATABASE_URL": url,
        "TERTULIA_DATA_DIR": data_dir,
        "TERTULIA_API_RATE_LIMIT_PER_MINUTE": "100000000",
        "TERTULIA_LOG_LEVEL": "warning",
    }
    command = [sys.executable, "-m", "uvicorn", "tertulia.app:create_app", "--factory"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"]
    server = subprocess.Popen(command, env=env)  # noqa: S603 (our own interpreter and arguments)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return server, base
        except httpx.TransportError:
            time.sleep(0.2)
    server.terminate()
    raise SystemExit("the server did not start")


def run_one(name: str, url: str, n: int) -> dict[str, Any]:
    if name == "postgresql":
        ensure_postgres_database(url)
    info = build_dataset(url, n)
    server, base = start_server(url, tempfile.mkdtemp(prefix="tertulia-bench-"))
    results: dict[str, Any] = {}
    created: list[dict[str, Any]] = []
    rng = random.Random(3)
    try:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {info.token}"}, timeout=30) as client:
            for _ in range(20):  # warm up the connection pool and the server's code paths
                client.get(f"/api/v1/contacts/id:{rng.randint(1, n)}")
            samples = []
            run = rng.randrange(10**9)
            for i in range(REQUESTS):
                body = {
                    "first_name": "Bench",
                    "last_name": f"Núñez {i}",
                    "email": f"bench-{run}-{i}@example.net",
                    "phone": f"+5256{(run + i) % 10**8:08d}",
                    "country": "MX",
                    "tags": ["bench"],
                }
                started = time.perf_counter()
                response = client.post("/api/v1/contacts", json=body)
                samples.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 201, response.text
                created.append(response.json())
            results["POST /contacts"] = percentiles(samples)
            existing = [client.get(f"/api/v1/contacts/id:{rng.randint(1, n)}").json() for _ in range(REQUESTS)]
            existing = [c for c in existing if "id" in c]
            for kind in ("id", "email", "phone"):
                pool = [c for c in existing if c.get(kind)]
                samples = []
                for contact in pool:
                    started = time.perf_counter()
                    response = client.get(f"/api/v1/contacts/{kind}:{contact[kind]}")
                    samples.append((time.perf_counter() - started) * 1000)
                    assert response.status_code == 200, response.text
                results[f"GET /contacts/{kind}:..."] = percentiles(samples)
            for contact in created:
                client.delete(f"/api/v1/contacts/id:{contact['id']}")
    finally:
        server.terminate()
        server.wait(timeout=30)
    return results


def main() -> None:
    n = contacts_wanted()
    report: dict[str, Any] = {}
    for name, url in database_urls(n).items():
        if name == "sqlite":
            Path(url.split("///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
        report[name] = run_one(name, url, n)
        for label, figures in report[name].items():
            print(f"{name:10} {label:28} {figures}", flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"api-{n}.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
