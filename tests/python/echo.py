#!/usr/bin/env python3
"""A TCP echo server for the scale test: each connection gets back what it
sent, then a FIN after the client's. Runs until killed. Its own process, so
its sockets count against its own open-file limit, not the test's."""
import argparse
import asyncio


async def echo(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.write_eof()
        await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def main(port):
    server = await asyncio.start_server(echo, "0.0.0.0", port, backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    asyncio.run(main(p.parse_args().port))
