"""The `mmlubench` command: its parser and flags, what each subcommand does, the embedded demo,
Ctrl-C handling and the `ceiling` command."""
