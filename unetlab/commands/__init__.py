"""One module per ``unetlab`` subcommand: ``add_parser(subparsers)`` and ``run(args)``."""
