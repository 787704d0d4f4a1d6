"""The ``safesteer`` command: one module per subcommand, each thin over the library."""
