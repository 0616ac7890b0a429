import sys

from symcere.cli import main

sys.exit(main())
