"""The report a person reads: one self-contained HTML file per experiment, made from results that exist.

:mod:`~toonvision.report.gather` asks the stages what there is to show, as plain data and paths of pictures;
:mod:`~toonvision.report.render` writes the page from the Jinja2 templates in ``templates/``, with every value
escaped; :mod:`~toonvision.report.build` puts them together into a folder of the report's own."""
