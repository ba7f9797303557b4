"""edgeplane cli."""
