"""One module per CLI command; cli.py wires them into the click group."""
