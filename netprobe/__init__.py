"""netprobe: what is broken, did failover happen, is the redundancy real."""

__version__ = "0.1.0"
