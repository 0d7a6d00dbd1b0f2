"""Widgets of the terminal client; none of them touches the network."""
