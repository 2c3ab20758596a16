"""Real-time face analytics: detect, track, and estimate age group and gender per track."""

from stream._xcb import prefer_opencv_xcb

__version__ = "0.1.0"

prefer_opencv_xcb()  # before any module imports av: see stream/_xcb.py
