"""From stored records to tables, statistics, plots, the page and the manifest; imports harness.store and harness.config, never harness.run or harness.grid."""


class ReportError(Exception):
    """No report can be made (no run records, an unknown format); the command line prints it as an error."""
