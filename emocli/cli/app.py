"""The ``emo`` command line: the application with its commands, in the order ``emo --help`` lists them.

Commands live by group (:mod:`~emocli.cli.predict`, :mod:`~emocli.cli.corpus`, :mod:`~emocli.cli.train`);
their shared options in :mod:`~emocli.cli.options`; how a run ends (exit codes, signals, a closed
stdout) in :mod:`~emocli.cli.base`.
"""

from emocli.cli import predict, corpus, train, info  # in the order `emo --help` lists their commands
from emocli.cli.base import app, main

# Importing a command module registers its commands on ``app``; ``emo --help`` lists them in this order.
COMMAND_MODULES = (predict, corpus, train, info)

__all__ = ["app", "main", "COMMAND_MODULES"]
