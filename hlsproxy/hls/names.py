"""The resources an HLS stream's playlists named, by the tokens that stand for them.

Only what a playlist of the stream named can be fetched: a client names a resource by an
opaque token, never by a URL, so it cannot make the proxy fetch anything else. A name is
forgotten once no playlist has given it for a while (`forget_before`).

Pure: no I/O, no clock read (each reading is passed in).
"""

from __future__ import annotations

from ..errors import NotFound
from .tokens import token_for
from .uri import Uri


class Names:
    def __init__(self) -> None:
        # token -> what it names and when a playlist named it or a client asked for it last
        self._named: dict[str, tuple[Uri, float]] = {}

    def __repr__(self) -> str:
        return f"<Names {len(self._named)}>"

    def __len__(self) -> int:
        return len(self._named)

    def name(self, uri: Uri, now: float) -> str:
        """The token a playlist gives for `uri`, named just now."""
        token = token_for(uri.kind, uri.url, uri.byterange)
        self._named[token] = (uri, now)
        return token

    def get(self, token: str) -> Uri | None:
        named = self._named.get(token)
        return None if named is None else named[0]

    def lookup(self, token: str, now: float) -> Uri:
        """What a client's `token` names. Raises NotFound for a token no playlist gave."""
        named = self._named.get(token)
        if named is None:
            raise NotFound("no such resource in this stream's playlists")
        uri = named[0]
        if uri.kind == "playlist":
            # In use: a variant playlist is named once, by a multivariant playlist that
            # players do not fetch again, and must live as long as players ask for it.
            # Segments need no touch: every playlist refresh names them anew.
            self._named[token] = (uri, now)
        return uri

    def forget_before(self, horizon: float) -> None:
        """Forget the names last given or asked for before `horizon`."""
        for token in [t for t, (_, seen) in self._named.items() if seen < horizon]:
            del self._named[token]
