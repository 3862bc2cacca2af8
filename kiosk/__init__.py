"""Edge screening kiosk: fundus and chest X-ray screening at the point of care."""

__version__ = "0.1.0"
