"""The tlschat daemon."""
