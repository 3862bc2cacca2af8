"""Inference back-ends behind one small interface, and signed model bundles.

``load_bundle(path, trusted_keys)`` verifies a bundle; ``open_engine(bundle, config)`` loads the
first back-end of ``KIOSK_BACKENDS`` that really runs here. Runtimes are imported only by the
back-end that is loaded.
"""

from engines.base import REGISTRY, Engine, open_engine
from engines.bundle import Bundle, find_bundles, load_bundle

__all__ = ["REGISTRY", "Bundle", "Engine", "find_bundles", "load_bundle", "open_engine"]
