"""OCI distribution client: pull and push over HTTP(S), with moby's progress messages."""
