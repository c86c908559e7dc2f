"""The fast path: HLS answers written straight to the connection's transport.

`site` listens and makes a `protocol.FastConnection` per client; `head` reads request heads
from raw bytes; `answers` makes the answers; `writer` writes them, under the flow control of
`flow`. Whatever the fast path does not answer goes, with its connection, to aiohttp.
"""
