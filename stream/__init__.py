"""Real-time face analytics: detect, track, and estimate age group and gender per track."""

__version__ = "0.1.0"
