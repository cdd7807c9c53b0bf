"""Provider plugins. See `base.py` for the contract; built-ins register through the same
`shipyard.providers` entry point group as third-party plugins."""
