"""`python -m webhook.cli`: the `gpu-rightsizer` command."""

import sys

from webhook.cli.main import main

sys.exit(main())
