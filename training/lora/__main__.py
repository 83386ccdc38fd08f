"""``python -m training.lora``: see cli.py."""
import sys

from training.lora.cli import main

sys.exit(main())
