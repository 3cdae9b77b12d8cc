"""pyimpact: why is this process stuck, and what do I lose if I kill it now."""
__version__ = "0.1.0"
