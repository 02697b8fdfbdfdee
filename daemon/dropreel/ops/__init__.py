"""Operations: logs, metrics, systemd notification, status reports, secrecy of the key."""
