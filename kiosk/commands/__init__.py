"""One module per ``kiosk`` verb: ``configure(parser)`` and ``run(args, config) -> int``."""
