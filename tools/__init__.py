"""Command-line tools: absl mains that parse flags, build a config and call the library."""
