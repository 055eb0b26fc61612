"""The ``tinylarge`` command line: a thin Typer app, one module per command."""
