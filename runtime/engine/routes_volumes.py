"""``/volumes`` endpoints over :class:`runtime.volumes.manager.VolumeManager`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runtime.api.errors import InvalidArgument
from runtime.engine.http import Request, Response, json_response, no_content
from runtime.engine.router import Router, api_at_least

if TYPE_CHECKING:
    from runtime.engine.engine import Engine


def register(router: Router, engine: Engine) -> None:
    vols = engine.volumes

    @router.route("GET", "/volumes")
    def list_volumes(req: Request) -> Response:
        return json_response({"Volumes": vols.list_volumes(req.filters()), "Warnings": None})

    @router.route("POST", "/volumes/create")
    def create(req: Request) -> Response:
        body = req.json(default={}) or {}
        if not isinstance(body, dict):
            raise InvalidArgument("invalid volume config")
        vol = vols.create(str(body.get("Name") or ""), str(body.get("Driver") or "local"),
                          body.get("DriverOpts"), body.get("Labels"))
        return json_response(vol, 201)

    @router.route("GET", "/volumes/{name}")
    def inspect(req: Request) -> Response:
        return json_response(vols.get(req.params["name"]))

    @router.route("DELETE", "/volumes/{name}")
    def remove(req: Request) -> Response:
        vols.remove(req.params["name"], force=req.bool_arg("force"))
        return no_content()

    @router.route("POST", "/volumes/prune")
    def prune(req: Request) -> Response:
        filters = req.filters()
        if not api_at_least(req, "1.42"):
            filters["all"] = ["true"]  # before 1.42 prune removed named volumes too
        deleted, space = vols.prune(filters)
        return json_response({"VolumesDeleted": deleted, "SpaceReclaimed": space})
