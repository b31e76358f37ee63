"""LLM answers: the API shapes (apis), the one stream reader for every transport (stream), token counts."""
