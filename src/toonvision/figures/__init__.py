"""Every figure ToonVision draws, one module per stage it shows. matplotlib is imported inside functions
(Agg backend, no display needed)."""
