"""tlschat: self-hosted encrypted chat for people who live in terminals."""

__version__ = "0.1.0"
