"""edgeplane scenarios."""
