"""Former script, now ``emo tune-views BUNDLE DATA [--write]`` (emocli.train.face.tune_views_command).

    python scripts/select_tta.py models/default ../shared/data/fer2013/train [--write]

kept so that the command recorded in older bundles' face.json still runs.
"""

import sys

from emocli.cli.app import main

if __name__ == "__main__":
    sys.argv[1:1] = ["tune-views"]
    main()
