"""The filesystem: moves that survive a crash on any mount, names that fit, folder layout."""
