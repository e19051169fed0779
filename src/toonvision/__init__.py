"""ToonVision."""
