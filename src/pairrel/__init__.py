"""pairrel: pair relevance classification (BCE) vs softmax losses for text encoders."""

from importlib.metadata import PackageNotFoundError, version

try:
    # One owner of the version: pyproject.toml, as installed (pip install -e . included).
    __version__ = version("pairrel")
except PackageNotFoundError:  # a source tree on PYTHONPATH that was never installed
    __version__ = "0+unknown"
