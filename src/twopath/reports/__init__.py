"""Reports room: figures (Display objects), tables and the HTML / Markdown / JSON writers."""

from twopath.reports.writers import DEFAULT_FORMATS, FORMATS, render_json, report_dict, write_report

__all__ = ["DEFAULT_FORMATS", "FORMATS", "render_json", "report_dict", "write_report"]
