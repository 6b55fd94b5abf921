"""OpenMMP: a self-hostable multi-channel business messaging platform implementing the MMP API."""

__version__ = "0.1.0"
