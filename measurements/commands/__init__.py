"""hi-bench subcommands; each module exposes ``register_cli(subparsers)``."""
