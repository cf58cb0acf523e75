import sys

from dealbooks_infra.stack import main

sys.exit(main())
