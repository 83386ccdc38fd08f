"""``python -m training.anime``: see cli.py."""
import sys

from training.anime.cli import main

sys.exit(main())
