"""edgeplane bench."""
