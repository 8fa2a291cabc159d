"""`lamina` subcommands that talk to a running server: `top`, `cost` and `tune`."""
