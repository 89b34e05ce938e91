"""Many runs: planning a grid, scheduling it on a local pool or Ray, watching the device; imports harness.run, harness.config and harness.store, never harness.report."""
