# The `pytest-incident` command line (a console script): one module per subcommand.
