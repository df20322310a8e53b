#!/usr/bin/env python3
"""A streamable-HTTP MCP server for agentd's tool-source tests, built on the official Python SDK.

Usage: python3 tests/mcp/http_server.py --port PORT --state-dir DIR [--require-header NAME=VALUE]

Serves MCP at http://127.0.0.1:PORT/mcp with sessions (the SDK's stateful default), no auth.
Prints `listening on 127.0.0.1:PORT` to stdout once it accepts connections; `--port 0` lets
the system pick the port, and the line names the one it picked.

Tools:
  add(a, b)       the sum, as structured content {"result": N} and a text block "N"
  fail(message)   raises, so the result has isError: true and the message in its text
  slow(seconds)   sleeps, then returns "slept"; when the call is cancelled it appends a line
                  `cancelled` to DIR/cancelled before the cancellation goes on
  count()         how many tools/call requests for other tools reached the server, counted
                  before the SDK validates name and arguments (so rejected ones count too)
  image()         one image block (a 1x1 PNG) and one text block
  exit_now()      ends the process at once with exit status 3, mid-call
  grow()          adds the tool `late(x)` (answers 2x) and sends notifications/tools/list_changed

With --require-header NAME=VALUE, an HTTP request without that header and value gets 401.
"""

import argparse
import asyncio
import base64
import os
import sys
from pathlib import Path

import uvicorn
from mcp.server.mcpserver import Context, Image, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolListChangedNotification

# A 1x1 opaque red PNG.
TINY_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
)


class CountingServer(MCPServer):
    """Counts every tools/call for a tool other than `count`, before the SDK checks the name
    or validates the arguments, so `count` shows whether a call reached the server at all."""

    calls = 0

    async def call_tool(self, name, arguments, context=None):
        if name != "count":
            self.calls += 1
        return await super().call_tool(name, arguments, context)


def build_server(state_dir: Path) -> MCPServer:
    mcp = CountingServer(name="agentd-test-http", version="1.0.0", log_level="WARNING")

    @mcp.tool(description="Add two integers.")
    def add(a: int, b: int) -> int:
        return a + b

    @mcp.tool(description="Always fails with the given message.", structured_output=False)
    def fail(message: str) -> str:
        # ToolError is the SDK's anticipated failure: its text reaches the client. Any other
        # exception would be reported only as "Error executing tool fail".
        raise ToolError(message)

    @mcp.tool(description="Sleep for the given number of seconds, then return 'slept'.")
    async def slow(seconds: float) -> str:
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            with open(state_dir / "cancelled", "a", encoding="utf-8") as f:
                f.write("cancelled\n")
            raise
        return "slept"

    @mcp.tool(description="How many times the other tools were called.")
    def count() -> int:
        return mcp.calls

    @mcp.tool(description="Return a tiny PNG image and a caption.", structured_output=False)
    def image() -> list:
        return [Image(data=TINY_PNG, format="png"), "a 1x1 red pixel"]

    @mcp.tool(description="Add the tool `late` and tell the client the tool list changed.")
    async def grow(ctx: Context) -> str:
        def late(x: int) -> int:
            """Double x."""
            return 2 * x

        if "late" not in {tool.name for tool in await mcp.list_tools()}:
            mcp.add_tool(late)
        # Sent on this call's stream, before its result: clients of the 2025 protocol
        # versions get it there (`notify_tools_changed` only reaches `subscriptions/listen`).
        await ctx.session.send_notification(
            ToolListChangedNotification(), related_request_id=ctx.request_id
        )
        return "grown"

    @mcp.tool(description="Make the server process exit immediately.", structured_output=False)
    def exit_now() -> str:
        os._exit(3)

    return mcp


class RequireHeader:
    """ASGI middleware: HTTP requests without the header NAME: VALUE get 401."""

    def __init__(self, app, name: str, value: str):
        self.app = app
        self.name = name.lower().encode("latin-1")
        self.value = value.encode("latin-1")

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and (self.name, self.value) not in scope["headers"]:
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")],
                }
            )
            await send({"type": "http.response.body", "body": b"unauthorized\n"})
            return
        await self.app(scope, receive, send)


async def serve(port: int, state_dir: Path, require_header: str | None) -> None:
    app = build_server(state_dir).streamable_http_app()
    if require_header:
        name, sep, value = require_header.partition("=")
        if not sep or not name:
            sys.exit("--require-header takes NAME=VALUE")
        app = RequireHeader(app, name, value)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    # `started` turns true once the lifespan startup (the SDK's session manager) has run and
    # the socket is listening.
    while not server.started:
        if task.done():
            await task
            sys.exit("server stopped before it started")
        await asyncio.sleep(0.02)
    # With `--port 0` the system picks the port; the one bound is what callers connect to.
    bound = server.servers[0].sockets[0].getsockname()[1]
    print(f"listening on 127.0.0.1:{bound}", flush=True)
    await task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--require-header", metavar="NAME=VALUE")
    args = parser.parse_args()
    args.state_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(serve(args.port, args.state_dir, args.require_header))


if __name__ == "__main__":
    main()
