"""Developer tools: sample data, benchmarks and the demo. Never shipped to a cluster."""
