"""A TCP forwarder in front of the local cluster's object store that can be told to fail.

    python s3_gate.py --listen 10.77.0.1:19000 --target 127.0.0.1:41234 --control 127.0.0.1:41235

Every connection to ``--listen`` is relayed to ``--target`` (moto's S3 server). A line
``cut SECONDS`` on the control port makes the object store unreachable for that long: the
listening socket is closed, so new connections are refused (the kernel answers RST), and every
open connection is reset; after SECONDS the gate listens again. The answer ``cut`` comes once
the cut is in effect. ``status`` answers ``open`` or ``cut REMAINING_SECONDS``.

This stands in for an unreachable object store without touching the host's routing or
firewall, and it is deterministic: nothing reaches the store during the cut.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import struct
import sys
import time

CHUNK = 1 << 16


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected HOST:PORT")
    return host, int(port)


def _log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} s3_gate: {message}", flush=True)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close a connection with RST instead of FIN, as a vanished peer or middlebox would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy one direction until EOF, then half-close the other side."""
    while data := await reader.read(CHUNK):
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof():
        writer.write_eof()


class Gate:
    """The forwarder and its switch."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self.listen = listen
        self.target = target
        self.server: asyncio.base_events.Server | None = None
        self.open_connections: set[asyncio.StreamWriter] = set()
        self.reopen_at = 0.0
        self.reopen: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(
            self.relay, *self.listen, reuse_address=True, backlog=256
        )

    async def relay(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        try:
            store_reader, store = await asyncio.open_connection(*self.target)
        except OSError as error:
            _log(f"target {self.target} unreachable: {error}")
            _reset(client)
            return
        self.open_connections |= {client, store}
        try:
            await asyncio.gather(_pipe(client_reader, store), _pipe(store_reader, client))
        except (OSError, asyncio.IncompleteReadError):
            _reset(client)
            _reset(store)
        finally:
            self.open_connections -= {client, store}
            client.close()
            store.close()

    async def cut(self, seconds: float) -> None:
        """Refuse and reset connections for ``seconds`` from now (extends a cut in progress)."""
        loop = asyncio.get_running_loop()
        self.reopen_at = max(self.reopen_at, loop.time() + seconds)
        if self.server is not None:
            self.server.close()
            self.server = None
        for writer in list(self.open_connections):
            _reset(writer)
        self.open_connections.clear()
        if self.reopen is not None:
            self.reopen.cancel()
        self.reopen = loop.call_at(self.reopen_at, lambda: asyncio.ensure_future(self._reopen()))
        _log(f"cut for {seconds:g} s: connections refused and reset")

    async def _reopen(self) -> None:
        self.reopen = None
        await self.start()
        _log("open again")

    def status(self) -> str:
        if self.server is not None:
            return "open"
        return f"cut {max(0.0, self.reopen_at - asyncio.get_running_loop().time()):.2f}"

    async def control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = (await reader.readline()).decode(errors="replace").split()
        if line[:1] == ["cut"] and len(line) == 2:
            try:
                seconds = float(line[1])
            except ValueError:
                seconds = -1.0
            if 0 < seconds <= 3600:
                await self.cut(seconds)
                answer = "cut"
            else:
                answer = f"error: cut takes seconds in (0, 3600], got {line[1]!r}"
        elif line == ["status"]:
            answer = self.status()
        else:
            answer = "error: commands are 'cut SECONDS' and 'status'"
        writer.write(f"{answer}\n".encode())
        await writer.drain()
        writer.close()


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=_address, required=True, help="HOST:PORT clients use")
    parser.add_argument("--target", type=_address, required=True, help="HOST:PORT of the store")
    parser.add_argument("--control", type=_address, required=True, help="HOST:PORT of the switch")
    args = parser.parse_args(argv)
    gate = Gate(args.listen, args.target)
    await gate.start()
    control = await asyncio.start_server(gate.control, *args.control, reuse_address=True)
    _log(f"relaying {args.listen} -> {args.target}, control on {args.control}")
    async with control:
        await control.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
