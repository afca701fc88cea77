"""Configuration: the schema a config file must satisfy, and advice on ones that load but mislead."""
