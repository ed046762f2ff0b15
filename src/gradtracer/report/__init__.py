"""Pure views and vocabulary of the data model in :mod:`gradtracer.findings`.

- :mod:`~gradtracer.report.catalog`: what each finding type means (``CATALOG``) and
  :func:`~gradtracer.report.catalog.make_finding`;
- :mod:`~gradtracer.report.history`: the run-history entry, ``history_series``,
  ``thin_history``;
- :mod:`~gradtracer.report.text`: the one text renderer (``render_text``, ``print_report``);
- :mod:`~gradtracer.report.figures`: report figures (``plot_report``; needs matplotlib);
- :mod:`~gradtracer.report.coerce`: ``as_report`` (a Report, or ``obj.to_report()``).

Trackers, the manager and the exporters import from here; nothing here imports them.
"""

from __future__ import annotations
