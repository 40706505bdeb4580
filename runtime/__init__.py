"""Cove's engine: the Linux container runtime, its daemon and the Docker API everyone speaks.

Sub-packages and who may import what (enforced by tests/test_layering.py):

- ``runtime.api``    platform-neutral, stdlib only: errors, wire helpers, the API client.
- ``runtime.cli``    the ``cove`` command; imports ``runtime.api`` (never ``runtime.linux``).
- ``runtime.linux``  the only Linux-specific code (namespaces, mounts, cgroups, seccomp).
- ``runtime.images`` content store, snapshots, layer unpacking, image records, registry client.
- ``runtime.net``    bridge networks, IPAM, NAT and published ports (Linux side).
- ``runtime.engine`` the daemon: HTTP server for the Docker Engine API over the above.
"""
