"""Where a dataset's cutouts come from: embedded sets (FIRST, simulated optical) and services."""
