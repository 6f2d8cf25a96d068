"""`python -m gene_ae.train`: see gene_ae/train/driver.py."""

import sys

from gene_ae.train.driver import main

sys.exit(main())
