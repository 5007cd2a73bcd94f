"""`python -m mmlubench` is the same as the `mmlubench` command (torchrun needs the module form)."""

from mmlubench.cli.main import main

raise SystemExit(main())
