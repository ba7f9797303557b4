"""edgeplane netproxy."""
