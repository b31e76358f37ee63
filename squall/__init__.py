"""squall: a load engine for HTTP and LLM APIs."""

__version__ = "0.1.0"
