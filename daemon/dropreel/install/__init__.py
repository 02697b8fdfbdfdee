"""Setting dropreel up on a machine: the starter config, the systemd unit, shell completion."""
