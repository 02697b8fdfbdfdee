"""Commands: the argument parser, operator commands and the demo."""
