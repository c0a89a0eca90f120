"""click commands, one module per capability; loaded lazily by ``portkit.cli._app``."""
