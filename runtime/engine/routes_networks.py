"""``/networks`` endpoints over :class:`runtime.net.manager.NetworkManager`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from runtime.api.errors import InvalidArgument
from runtime.engine.http import Request, Response, json_response, no_content
from runtime.engine.router import Router
from runtime.net.model import PREDEFINED
from runtime.net.until import until_ns

if TYPE_CHECKING:
    from runtime.engine.engine import Engine

_FILTERS = ("name", "id", "label", "label!", "driver", "type", "dangling", "scope")


def register(router: Router, engine: Engine) -> None:
    nets = engine.networks

    @router.route("GET", "/networks")
    def list_networks(req: Request) -> Response:
        filters = req.filters()
        for key in filters:
            if key not in _FILTERS:
                raise InvalidArgument(f"invalid filter '{key}'")
        out = [n for n in nets.list_networks() if match(n, filters)]
        for n in out:
            n["Containers"] = {}  # the list never carries endpoints (dockerd neither)
        return json_response(out)

    @router.route("GET", "/networks/{id}")
    def inspect(req: Request) -> Response:
        return json_response(nets.inspect_network(req.params["id"]))

    @router.route("DELETE", "/networks/{id}")
    def remove(req: Request) -> Response:
        nets.remove_network(req.params["id"])
        return no_content()

    @router.route("POST", "/networks/create")
    def create(req: Request) -> Response:
        body = req.json(default={}) or {}
        if not isinstance(body, dict):
            raise InvalidArgument("invalid network config")
        net_id, warning = nets.create_network(body)
        return json_response({"Id": net_id, "Warning": warning}, 201)

    @router.route("POST", "/networks/{id}/connect")
    def connect(req: Request) -> Response:
        body = req.json(default={}) or {}
        c = engine.containers.get(str(body.get("Container") or ""))
        cfg = body.get("EndpointConfig") or {}
        net = nets.find(req.params["id"])
        nets.connect(net.id, c.id, endpoint_config=cfg, running=c.running, name=c.name)
        _sync_container(engine, c, net.name, cfg)
        return Response(200, b"", content_type="")

    @router.route("POST", "/networks/{id}/disconnect")
    def disconnect(req: Request) -> Response:
        body = req.json(default={}) or {}
        c = engine.containers.get(str(body.get("Container") or ""))
        net = nets.find(req.params["id"])
        nets.disconnect(net.id, c.id, force=bool(body.get("Force")))
        _sync_container(engine, c, net.name, None)
        return Response(200, b"", content_type="")

    @router.route("POST", "/networks/prune")
    def prune(req: Request) -> Response:
        filters = req.filters()
        deleted = []
        for n in nets.list_networks():
            if n["Name"] in PREDEFINED or n["Containers"] or not _prune_match(n, filters):
                continue
            try:
                nets.remove_network(n["Id"])
            except Exception:
                continue
            deleted.append(n["Name"])
        return json_response({"NetworksDeleted": deleted})


def _sync_container(engine: Engine, c: Any, net_name: str, cfg: dict[str, Any] | None) -> None:
    """Keep the container record's EndpointsConfig and NetworkSettings in step."""
    ncfg = c.networking_config if isinstance(c.networking_config, dict) else {}
    eps = ncfg.setdefault("EndpointsConfig", {}) or {}
    ncfg["EndpointsConfig"] = eps
    if cfg is None:
        for key in [k for k in eps if k == net_name or (net_name == "bridge" and k == "default")]:
            del eps[key]
    else:
        eps[net_name] = cfg
    c.networking_config = ncfg
    if c.running:
        c.network_settings = engine.networks.settings(c.id)
    save: Callable[[], None] | None = getattr(c, "save_config", None)
    if save is not None:
        save()


def _labels_match(labels: dict[str, str], wanted: list[str]) -> bool:
    for w in wanted:
        key, eq, value = w.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    return True


def match(n: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    checks: dict[str, Callable[[str], bool]] = {
        "name": lambda v: v in n["Name"],
        "id": lambda v: n["Id"].startswith(v),
        "driver": lambda v: v == n["Driver"],
        "scope": lambda v: v == n["Scope"],
        "type": lambda v: (v == "builtin") == (n["Name"] in PREDEFINED),
        "dangling": lambda v: (v.lower() in ("1", "true")) == (
            not n["Containers"] and n["Name"] not in PREDEFINED),
    }
    for key, values in filters.items():
        if key == "label" and not _labels_match(n.get("Labels") or {}, values):
            return False
        if key == "label!" and any(_labels_match(n.get("Labels") or {}, [v]) for v in values):
            return False
        if key in checks and not any(checks[key](v) for v in values):
            return False
    return True


def _prune_match(n: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    if not match(n, {k: v for k, v in filters.items() if k in ("label", "label!")}):
        return False
    for until in filters.get("until", []):
        limit = until_ns(until)
        try:
            created = datetime.fromisoformat(str(n.get("Created", "")).replace("Z", "+00:00"))
        except ValueError:
            continue
        if created.timestamp() * 1_000_000_000 >= limit:
            return False  # created at or after the limit: kept
    return True
