"""Host side of the VM path: hypervisor backends, guest image, SSH relay, port forwards."""
