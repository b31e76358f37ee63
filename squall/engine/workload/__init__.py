"""What a run sends: request sources (http, llm) for channels, iteration workloads (journey, py)."""
