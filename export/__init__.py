"""Offline tooling: train, calibrate, export, quantise, sign and bundle the kiosk's models.

torch is imported only here (the ``export`` extra); the running kiosk never needs it.
"""
