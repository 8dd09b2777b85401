"""ecomrl: learn a Virtual-Taobao simulator from session logs, train ranking policies in it."""

__version__ = "0.1.0"
