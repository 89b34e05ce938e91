"""From stored records to tables, statistics, plots, the page and the manifest; imports harness.store and harness.config, never harness.run or harness.grid."""
