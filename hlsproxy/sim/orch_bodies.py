"""The simulated orchestrator's request bodies and queries: v1's checked the way FastAPI
does, v2.1's the way Go's `encoding/json` decodes them (a field of the wrong type fails the
whole body; unknown fields are ignored)."""

from __future__ import annotations

import json
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationError

Model = TypeVar("Model", bound=BaseModel)


class EngineAddress(BaseModel):
    host: str
    port: int


class StreamKey(BaseModel):
    key_type: Literal["content_id", "infohash", "url", "magnet"]
    key: str


class StartedSession(BaseModel):
    playback_session_id: str
    stat_url: HttpUrl
    command_url: HttpUrl
    is_live: int = 1


class StreamStarted(BaseModel):
    container_id: str | None = None
    engine: EngineAddress
    stream: StreamKey
    session: StartedSession
    labels: dict[str, str] = Field(default_factory=dict)


class StreamEnded(BaseModel):
    container_id: str | None = None
    stream_id: str | None = None
    reason: str | None = None


class ProvisionRequest(BaseModel):
    labels: dict[str, str] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)


class StreamsQuery(BaseModel):
    container_id: str | None = None
    status: Literal["started", "ended"] | None = None


class _GoJSON(BaseModel):
    model_config = ConfigDict(strict=True)


class GoEngineAddress(_GoJSON):
    host: str = ""
    port: int = 0


class GoStreamKey(_GoJSON):
    key_type: str = ""
    key: str = ""
    file_indexes: str = ""
    seekback: int = 0
    live_delay: int = 0


class GoSession(_GoJSON):
    playback_session_id: str = ""
    stat_url: str = ""
    command_url: str = ""
    is_live: int = 0


class GoStreamStarted(_GoJSON):
    """v2.1's `StreamStartedEvent`."""

    content_id: str = ""
    engine_id: str = ""
    engine_name: str = ""
    container_id: str = ""
    engine: GoEngineAddress | None = None
    stream: GoStreamKey | None = None
    session: GoSession | None = None
    labels: dict[str, str] | None = None


class GoStreamEnded(_GoJSON):
    """v2.1's `StreamEndedEvent`."""

    content_id: str = ""
    stream_id: str = ""
    container_id: str = ""
    reason: str = ""


async def parse_go(request: web.Request, model: type[Model]) -> tuple[dict[str, Any], Model] | None:
    """The body as JSON and as `model`, or None where Go answers 400 `invalid json`."""
    try:
        data = json.loads(await request.read())
        return data, model.model_validate(data)
    except (ValueError, ValidationError):
        return None


async def parse(
    request: web.Request, model: type[Model]
) -> tuple[dict[str, Any], Model] | web.Response:
    """The body as JSON and as `model`, or FastAPI's 422 for a missing, broken or invalid one."""
    raw = await request.read()
    if not raw.strip():
        missing = {"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}
        return web.json_response({"detail": [missing]}, status=422)
    try:
        data = json.loads(raw)
    except ValueError as exc:
        where = exc.pos if isinstance(exc, json.JSONDecodeError) else 0
        broken = {
            "type": "json_invalid",
            "loc": ["body", where],
            "msg": "JSON decode error",
            "input": {},
            "ctx": {"error": str(exc)},
        }
        return web.json_response({"detail": [broken]}, status=422)
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        return unprocessable(exc, "body")
    # Every body model is an object, so a body that validated is a JSON object.
    return data, parsed


def unprocessable(exc: ValidationError, where: str) -> web.Response:
    detail = [
        {**error, "loc": [where, *error["loc"]]}
        for error in exc.errors(include_url=False, include_context=False)
    ]
    return web.json_response({"detail": detail}, status=422)
