"""uebench: a benchmark suite for unlearnable examples and the defenses against them."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("uebench")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.1.0"

__all__ = ["__version__"]
