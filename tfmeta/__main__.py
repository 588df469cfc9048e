"""``python -m tfmeta`` runs the command line."""
import sys

from tfmeta.cli import main

sys.exit(main())
