"""Screens of the terminal client: connect, main, trust prompts and small dialogs."""
