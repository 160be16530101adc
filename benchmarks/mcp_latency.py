"""The MCP server's overhead: a warm server's ``search`` call against the store's own search.

Serves the 50k dev-corpus store that ``benchmarks/command_cold.py`` builds
(run that first) and times, over the SDK's stdio client: server start to
first answer (model load included), then --runs ``search`` calls; and the
same queries in-process (query embedding + ``LeannStore.search``, warm).
Medians; the difference is what the protocol and the server add.

    python benchmarks/mcp_latency.py --runs 7
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

QUERIES = ("parse a JSON document into Python objects", "run a shell command and capture its output",
           "gradient of a tensor", "symbolic integration of a polynomial", "read a CSV file into rows",
           "rotate an image by an angle", "temporary directory removed automatically")


async def served(index: Path, runs: int) -> tuple[float, list[float]]:
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client
    t0 = time.perf_counter()
    params = StdioServerParameters(command=sys.executable,
                                   args=["-m", "leann_store.command.cli", "mcp", "--index", str(index), "-q"])
    walls = []
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        await session.call_tool("search", {"query": "warm up", "k": 5})
        first = time.perf_counter() - t0
        for r in range(runs):
            t = time.perf_counter()
            res = await session.call_tool("search", {"query": QUERIES[r % len(QUERIES)], "k": 5})
            walls.append(time.perf_counter() - t)
            assert not res.is_error, res.content
    return first, walls


def in_process(index: Path, runs: int) -> list[float]:
    from leann_store import LeannStore
    from leann_store.command.models import load_model
    model = load_model()
    out = []
    with LeannStore.open(index, embed=model, model=model.identity, read_only=True) as store:
        store.search(model.embed_query("warm up"), k=5)
        for r in range(runs):
            t = time.perf_counter()
            store.search(model.embed_query(QUERIES[r % len(QUERIES)]), k=5)
            out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", default="/tmp/leann-command-cold/devcorpus-50000")
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    index = Path(args.index)
    first, walls = asyncio.run(served(index, args.runs))
    own = in_process(index, args.runs)
    print(f"server start to first answer: {first:.2f} s")
    print(f"search over MCP (client wall): median {statistics.median(walls) * 1e3:.0f} ms "
          f"({min(walls) * 1e3:.0f}-{max(walls) * 1e3:.0f})")
    print(f"the store's own (embed + search): median {statistics.median(own) * 1e3:.0f} ms "
          f"({min(own) * 1e3:.0f}-{max(own) * 1e3:.0f})")
    print(f"difference of medians: {(statistics.median(walls) - statistics.median(own)) * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
