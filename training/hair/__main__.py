"""``python -m training.hair``: see cli.py."""
import sys

from training.hair.cli import main

sys.exit(main())
