"""Platform-neutral code shared by the CLI, the desktop, vmhost and guestagent (stdlib only)."""
