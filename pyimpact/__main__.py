"""`python -m pyimpact` = the `pyimpact` command."""
from .cli import entry

entry()
