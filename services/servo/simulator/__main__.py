import sys

from services.servo.simulator.cli import main

sys.exit(main())
