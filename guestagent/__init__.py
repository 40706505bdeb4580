"""Runs inside the VM: dial-stdio relay to the engine socket, events, health."""

__version__ = "0.1.0"
