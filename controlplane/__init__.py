"""edgeplane controlplane."""
