"""``python -m training.prepare``: see cli.py."""
import sys

from training.prepare.cli import main

sys.exit(main())
