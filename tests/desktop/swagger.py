"""Docker Engine API JSON shapes, from the swagger examples (v1.44), for model tests."""

from __future__ import annotations

from typing import Any

CONTAINER_SUMMARY: dict[str, Any] = {
    "Id": "8dfafdbc3a40",
    "Names": ["/boring_feynman"],
    "Image": "ubuntu:latest",
    "ImageID": "sha256:d74508fb6632491cea586a1fd7d748dfc5274cd6fdfedee309ecdcbc2bf5cb82",
    "Command": "echo 1",
    "Created": 1367854155,
    "State": "Exited",
    "Status": "Exit 0",
    "Ports": [{"PrivatePort": 2222, "PublicPort": 3333, "Type": "tcp"}],
    "Labels": {"com.example.vendor": "Acme", "com.example.license": "GPL",
               "com.example.version": "1.0"},
    "SizeRw": 12288,
    "SizeRootFs": 0,
    "HostConfig": {"NetworkMode": "default"},
    "NetworkSettings": {"Networks": {"bridge": {
        "NetworkID": "7ea29fc1412292a2d7bba362f9253545fecdfa8ce9a6e37dd10ba8bee7129812",
        "EndpointID": "2cdc4edb1ded3631c81f57966563e5c8525b81121bb3706a9a9a3ae102711f3f",
        "Gateway": "172.17.0.1", "IPAddress": "172.17.0.2", "IPPrefixLen": 16,
        "MacAddress": "02:42:ac:11:00:02"}}},
    "Mounts": [{"Name": "fac362...80535", "Source": "/data", "Destination": "/data",
                "Driver": "local", "Mode": "ro,Z", "RW": False, "Propagation": "",
                "Type": "volume"}],
}


def container(ident: str, name: str, state: str = "running", project: str = "",
              ports: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    labels = {"com.docker.compose.project": project} if project else {}
    return {**CONTAINER_SUMMARY, "Id": ident, "Names": ["/" + name], "State": state,
            "Status": "Up 2 minutes" if state == "running" else "Exited (0) 1 minute ago",
            "Labels": labels, "Ports": ports or []}


IMAGE_SUMMARY: dict[str, Any] = {
    "Id": "sha256:ec3f0931a6e6b6855d76b2d7b0be30e81860baccd891b2e243280bf1cd8ad710",
    "ParentId": "",
    "RepoTags": ["example:1.0", "example:latest", "example:stable",
                 "internal.registry.example.com:5000/example:1.0"],
    "RepoDigests": [
        "example@sha256:afcc7f1ac1b49db317a7196c902e61c6c3c4607d63599ee1a82d702d249a0ccb"],
    "Created": 1644009612,
    "Size": 172064416,
    "SharedSize": 1239828,
    "VirtualSize": 172064416,
    "Labels": {"com.example.some-label": "some-label-value"},
    "Containers": 2,
}

VOLUME: dict[str, Any] = {
    "Name": "tardis",
    "Driver": "custom",
    "Mountpoint": "/var/lib/docker/volumes/tardis",
    "CreatedAt": "2016-06-07T20:31:11.853781916Z",
    "Labels": {"com.example.some-label": "some-value"},
    "Scope": "local",
    "Options": {"device": "tmpfs"},
    "UsageData": {"Size": 1, "RefCount": 1},
}

NETWORK: dict[str, Any] = {
    "Name": "bridge",
    "Id": "7ea29fc1412292a2d7bba362f9253545fecdfa8ce9a6e37dd10ba8bee7129812",
    "Created": "2016-10-19T06:21:00.416543526Z",
    "Scope": "local",
    "Driver": "bridge",
    "IPAM": {"Driver": "default", "Config": [{"Subnet": "172.17.0.0/16"}]},
}

STATS: dict[str, Any] = {
    "read": "2015-01-08T22:57:31.547920715Z",
    "networks": {"eth0": {"rx_bytes": 5338, "tx_bytes": 648},
                 "eth5": {"rx_bytes": 4641, "tx_bytes": 1000}},
    "memory_stats": {"stats": {"inactive_file": 0}, "usage": 6537216, "limit": 67108864},
    "blkio_stats": {"io_service_bytes_recursive": [{"major": 8, "minor": 0, "op": "read",
                                                    "value": 1000}]},
    "cpu_stats": {"cpu_usage": {"percpu_usage": [8646879, 24472255, 36438778, 30657443],
                                "total_usage": 100215355},
                  "system_cpu_usage": 739306590000000, "online_cpus": 4},
    "precpu_stats": {"cpu_usage": {"percpu_usage": [8646879, 24350896, 36438778, 30657443],
                                   "total_usage": 100093996},
                     "system_cpu_usage": 9492140000000, "online_cpus": 4},
}


def event(action: str, ident: str, **attrs: str) -> dict[str, Any]:
    """A container event as the engine sends it (swagger EventMessage)."""
    return {"Type": "container", "Action": action, "Actor": {"ID": ident, "Attributes": attrs},
            "scope": "local", "time": 1629574695, "timeNano": 1629574695515050031}
