"""The report a person reads: one self-contained HTML file per experiment, rendered from results that
exist (see :mod:`toonvision.report.build`)."""
