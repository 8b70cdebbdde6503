"""bobosync: keeps BlackBerry AtHoc's duty status in step with BOBO files."""

__version__ = "1.0.0"
