"""edgeplane edge_agent."""
