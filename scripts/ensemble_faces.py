"""Former script, now ``emo ensemble A B DATA --out OUT [--write]`` (emocli.train.face.ensemble_command).

    python scripts/ensemble_faces.py BUNDLE_A BUNDLE_B TRAIN --out BUNDLE [--write]

kept so that the command recorded in older bundles' face.json still runs.
"""

import sys

from emocli.cli.app import main

if __name__ == "__main__":
    sys.argv[1:1] = ["ensemble"]
    main()
