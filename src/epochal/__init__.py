"""epochal: deep-learning training with the best practices built in."""
__version__ = "0.1.0"
