"""python scripts/report.py [--sweep ID | --all] [--tracking-uri URI] [--experiment NAME] [--out DIR]"""

import sys

from linreg_lab.report import main

sys.exit(main())
