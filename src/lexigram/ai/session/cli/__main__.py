"""Entry point of ``python -m lexigram.ai.session.cli``."""

from lexigram.ai.session.cli.main import main

raise SystemExit(main())
