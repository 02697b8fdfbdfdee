"""dropreel: a headless drop-folder client for asynchronous AI video generation."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dropreel")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
