import sys

from pytest_incident.cli.main import main

sys.exit(main())
