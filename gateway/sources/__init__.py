"""Sources: where messages come from and where acknowledgements and outgoing messages go."""
