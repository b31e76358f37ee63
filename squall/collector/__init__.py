"""The collector: merges workers' windows exactly, samples processes, feeds the live view and the result."""
