"""What differs by model kind, written once per kind; imports tasks.base only (for types)."""
from kinds.base import *  # noqa: F401,F403
