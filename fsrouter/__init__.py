"""fsrouter: inbound call routing for FreeSWITCH."""

__version__ = "0.1.0"
