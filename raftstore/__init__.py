"""edgeplane raftstore."""
