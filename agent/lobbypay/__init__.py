"""lobbypay: the lobby card-terminal agent."""

__version__ = "0.1.0"
