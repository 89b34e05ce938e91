"""One run: the recipe and what it needs (data, models) plus `bench`; imports kinds, tasks, rewards, harness.config and harness.store, never harness.grid or harness.report."""
