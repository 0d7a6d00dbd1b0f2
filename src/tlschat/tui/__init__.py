"""The Textual terminal client: screens, widgets and the stylesheet; talks only to `tlschat.client`."""
