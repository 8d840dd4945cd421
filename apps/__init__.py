"""Command-line applications: `python -m apps.<name> --help`."""
