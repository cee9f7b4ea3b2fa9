"""``python -m melanoma_mlops.tracking_server``: the MLflow server image's entry point."""

import logging
import sys

from . import main

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
sys.exit(main())
