"""`/v1/schedules`: create, list, read, change, pause, resume and delete schedules.

The bodies are checked against `contract.SCHEDULE_INPUT` / `SCHEDULE_CHANGE` by
`domain.schedules.parse_schedule` / `parse_change` (422 naming each bad field); the store
keeps the rules (`JobStore.create_schedule`, ...)."""

from __future__ import annotations

import re

import falcon

from taskyard.domain import contract
from taskyard.domain.schedules import parse_change, parse_schedule
from taskyard.domain.schema import quoted
from taskyard.entrypoints.api import query
from taskyard.entrypoints.api.body import read_object
from taskyard.entrypoints.api.problems import not_found
from taskyard.entrypoints.api.services import Services

_NAME = re.compile(contract.SCHEDULE_NAME.pattern or "")


def schedule_name_of_path(name: str) -> str:
    """The schedule a path names; anything else is simply not found."""
    if _NAME.fullmatch(name) is None:
        raise not_found(f"{quoted(name)} is not a schedule name")
    return name


class Schedules:
    """`POST /v1/schedules` (create: 201, 409 when the name is taken) and `GET` (all)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        query.params_of(req, ())
        resp.media = {"schedules": [s.to_json() for s in self.services.store.schedules()]}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        query.params_of(req, ())
        spec, paused = parse_schedule(read_object(req))
        made = self.services.store.create_schedule(spec, paused=paused)
        resp.status = falcon.HTTP_201
        resp.location = f"/v1/schedules/{made.name}"
        resp.media = made.to_json()


class OneSchedule:
    """`GET`, `PATCH` (any field but the name) and `DELETE` of `/v1/schedules/{name}`."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        query.params_of(req, ())
        resp.media = self.services.store.schedule(schedule_name_of_path(name)).to_json()

    def on_patch(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        query.params_of(req, ())
        store = self.services.store
        stored = store.schedule(schedule_name_of_path(name))
        spec, paused = parse_change(stored.spec, read_object(req))
        changed = store.update_schedule(spec)
        if paused is not None:
            changed = store.pause_schedule(name, paused=paused)
        resp.media = changed.to_json()

    def on_delete(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        query.params_of(req, ())
        resp.media = self.services.store.delete_schedule(schedule_name_of_path(name)).to_json()


class PauseSchedule:
    """`POST /v1/schedules/{name}/pause`: no fires until resumed."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def on_post(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        query.params_of(req, ())
        store = self.services.store
        resp.media = store.pause_schedule(schedule_name_of_path(name), paused=True).to_json()


class ResumeSchedule:
    """`POST /v1/schedules/{name}/resume`: fires again from the next fire time after now
    (the fires of the pause are not caught up)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def on_post(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        query.params_of(req, ())
        store = self.services.store
        resp.media = store.pause_schedule(schedule_name_of_path(name), paused=False).to_json()
