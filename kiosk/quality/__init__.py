"""Image quality (gradability): pure functions from pixels to a QualityReport."""
