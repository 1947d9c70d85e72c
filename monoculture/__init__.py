"""monoculture: private measurement of outcome homogenization across companies."""

__version__ = "0.1.0"
