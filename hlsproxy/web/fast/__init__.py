"""The fast path: HLS answers (`web/hls_answer.py`) written straight to the transport.

`site` listens and makes a `protocol.FastConnection` per client; `head` reads request heads
from raw bytes; `writer` writes the answers, under the flow control of `flow`. Whatever the
fast path does not read goes, with its connection, to aiohttp.
"""
