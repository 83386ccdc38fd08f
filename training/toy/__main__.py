"""``python -m training.toy``: see recipe.py."""
import sys

from training.toy.recipe import main

sys.exit(main())
