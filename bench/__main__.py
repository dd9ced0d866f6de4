"""Run every benchmark, or the ones named: `python -m bench [name ...]`."""

import importlib
import pkgutil
import sys
from pathlib import Path


def main(names: list[str]) -> None:
    available = sorted(
        m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.name.startswith("bench_")
    )
    chosen = [f"bench_{n.removeprefix('bench_')}" for n in names] or available
    for name in chosen:
        if name not in available:
            raise SystemExit(f"unknown benchmark {name}; available: {', '.join(available)}")
        print(f"== {name}", flush=True)
        importlib.import_module(f"bench.{name}").main()


if __name__ == "__main__":
    main(sys.argv[1:])
