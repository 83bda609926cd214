"""mmzoo: classic vision-language models assembled from shared parts.

The public API lives here; everything else is importable but considered internal.
"""

__version__ = "0.1.0"
