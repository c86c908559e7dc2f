import sys

from hlsproxy.cli import main

sys.exit(main())
