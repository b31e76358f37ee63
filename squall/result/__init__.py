"""The result document: schema, reading, exact merges and comparisons."""
