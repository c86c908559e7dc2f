"""The one exception tree of hlsproxy.

Every class carries the HTTP status a client gets for it, and a message that is safe to
show: it never names an engine's address, a pid or a playback session. The web layer turns
these into a short JSON body; anything else that escapes is a bug and becomes a bare 500.

    ProxyError (500)
    ├── ClientError (400)
    │   ├── BadRequest (400)
    │   ├── Unauthorized (401)
    │   ├── Forbidden (403)
    │   └── NotFound (404)
    ├── Unavailable (503, Retry-After)
    │   └── ShuttingDown (503)
    └── EngineError (502)
        ├── EngineLost (502)           the engine is not answering: another may serve
        │   ├── EngineUnreachable (502)
        │   │   └── EngineRefused (502) nothing answers at its address: it is down
        │   ├── EngineTimeout (504)
        │   └── EngineStalled (504)    a body stopped arriving
        ├── EngineRejected (502)       the engine answered with an "error" field
        │   └── ContentGone (502)      the engine cannot load the content at all
        ├── EngineProtocolError (502)  the engine answered something we cannot read
        │   └── NotAnEngine (502)      what answers at the engine's address is no engine
        ├── EngineStatus (502)         a resource answered an unexpected HTTP status
        ├── EnginePrebuffering (504)   the engine prebuffered past ACEXY_PREBUFFER_TIMEOUT
        └── EngineRedirected (502)     a redirect away from the engine, or too many

Callers that treat a dead engine alike (fail over, mark the engine) catch EngineLost.
"""

from __future__ import annotations


class ProxyError(Exception):
    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class ClientError(ProxyError):
    status = 400
    code = "bad_request"


class BadRequest(ClientError):
    pass


class Unauthorized(ClientError):
    status = 401
    code = "unauthorized"


class Forbidden(ClientError):
    status = 403
    code = "forbidden"


class NotFound(ClientError):
    status = 404
    code = "not_found"


class Unavailable(ProxyError):
    status = 503
    code = "unavailable"

    def __init__(self, message: str, retry_after: float = 5.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ShuttingDown(Unavailable):
    code = "shutting_down"

    def __init__(self) -> None:
        super().__init__("the proxy is shutting down", retry_after=5.0)


class EngineError(ProxyError):
    status = 502
    code = "engine_error"


class EngineLost(EngineError):
    """The engine stopped answering; it may be dead, so another engine may serve instead."""

    code = "engine_lost"


class EngineUnreachable(EngineLost):
    code = "engine_unreachable"


class EngineRefused(EngineUnreachable):
    """No connection could be made: the engine is down, not merely slow or flaky."""


class EngineRejected(EngineError):
    """The engine said no. Its own text (e.g. "failed to load content") is safe to pass on."""

    code = "engine_rejected"


class ContentGone(EngineRejected):
    """The engine cannot load this content (an id that never existed, or a channel that
    ended): retrying will not bring it back."""

    code = "content_load_failed"


class EngineProtocolError(EngineError):
    code = "engine_protocol_error"


class NotAnEngine(EngineProtocolError):
    """Something answers at the engine's address, but not as an AceStream engine does: another
    web server, or a proxy (this one included) set up as its own engine."""

    code = "not_an_engine"

    def __init__(self, configured: bool) -> None:
        where = "check ACEXY_HOST/ACEXY_PORT" if configured else "check the orchestrator's engines"
        super().__init__(f"the engine's address answers, but not as an AceStream engine: {where}")


class EngineStatus(EngineError):
    code = "engine_status"

    def __init__(self, upstream_status: int) -> None:
        super().__init__(f"the engine answered HTTP {upstream_status}")
        self.upstream_status = upstream_status


class EngineRedirected(EngineError):
    code = "engine_redirect"


class EnginePrebuffering(EngineError):
    """The engine kept saying it was prebuffering for longer than the proxy waits. It is
    alive and working, so this is not EngineLost: another engine would start over."""

    status = 504
    code = "engine_prebuffering"


class EngineTimeout(EngineLost):
    status = 504
    code = "engine_timeout"


class EngineStalled(EngineLost):
    status = 504
    code = "engine_stalled"
